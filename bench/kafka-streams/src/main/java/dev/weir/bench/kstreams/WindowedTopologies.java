package dev.weir.bench.kstreams;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.Properties;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.streams.KeyValue;
import org.apache.kafka.streams.StreamsBuilder;
import org.apache.kafka.streams.StreamsConfig;
import org.apache.kafka.streams.Topology;
import org.apache.kafka.streams.TopologyConfig;
import org.apache.kafka.streams.kstream.Consumed;
import org.apache.kafka.streams.kstream.Grouped;
import org.apache.kafka.streams.kstream.KTable;
import org.apache.kafka.streams.kstream.Materialized;
import org.apache.kafka.streams.kstream.Named;
import org.apache.kafka.streams.kstream.Produced;
import org.apache.kafka.streams.kstream.Suppressed;
import org.apache.kafka.streams.kstream.TimeWindowedKStream;
import org.apache.kafka.streams.kstream.TimeWindows;

import org.apache.kafka.streams.state.WindowStore;

/**
 * Kafka Streams peers of weir's windowed benchmark pipelines, over records keyed by user:
 * {@code tumbling-count} counts each user's records per 1-minute window, {@code hopping-sum} sums
 * their {@code amount} per 10-minute window advancing by 1 minute; both with 5 s of grace, in
 * RocksDB window stores (changelogged), and both emit each window's result once, when it closes
 * ({@code suppress(untilWindowCloses(unbounded()))}), written as {@code {"n":N}} or
 * {@code {"total":T}} keyed by weir's windowed key JSON {@code {"key":K,"start":S,"end":E}}.
 */
final class WindowedTopologies {
    private WindowedTopologies() {}

    static final Duration GRACE = Duration.ofSeconds(5);

    static Topology topology(Properties props, String kind, String inputTopic, String outputTopic) {
        StreamsBuilder builder = new StreamsBuilder(new TopologyConfig(new StreamsConfig(props)));
        TimeWindows windows = kind.equals("tumbling-count")
                ? TimeWindows.ofSizeAndGrace(Duration.ofMinutes(1), GRACE)
                : TimeWindows.ofSizeAndGrace(Duration.ofMinutes(10), GRACE).advanceBy(Duration.ofMinutes(1));
        TimeWindowedKStream<String, byte[]> windowed = builder
                .stream(inputTopic, Consumed.with(Serdes.String(), Serdes.ByteArray()).withName("in"))
                .groupByKey(Grouped.with("per-window", Serdes.String(), Serdes.ByteArray()))
                .windowedBy(windows);
        Materialized<String, Long, WindowStore<org.apache.kafka.common.utils.Bytes, byte[]>> store =
                Materialized.<String, Long, WindowStore<org.apache.kafka.common.utils.Bytes, byte[]>>as("per-window")
                        .withKeySerde(Serdes.String()).withValueSerde(Serdes.Long());
        KTable<org.apache.kafka.streams.kstream.Windowed<String>, Long> table = kind.equals("tumbling-count")
                ? windowed.count(Named.as("count"), store)
                : windowed.aggregate(() -> 0L, (user, value, total) -> total + amountOf(user, value),
                        Named.as("sum"), store);
        String field = kind.equals("tumbling-count") ? "n" : "total";
        table.suppress(Suppressed.untilWindowCloses(Suppressed.BufferConfig.unbounded()).withName("final"))
                .toStream(Named.as("results"))
                .map((window, result) -> KeyValue.pair(keyOf(window),
                        ("{\"" + field + "\":" + result + "}").getBytes(StandardCharsets.UTF_8)), Named.as("render"))
                .to(outputTopic, Produced.with(Serdes.String(), Serdes.ByteArray()).withName("out"));
        return builder.build(props);
    }

    /** The record's integral {@code amount}, 0 when it has none. */
    private static long amountOf(String user, byte[] value) {
        ObjectNode object = JsonSteps.parseObject(user, value);
        JsonNode amount = object == null ? null : object.get(JsonSteps.AMOUNT_FIELD);
        return amount != null && amount.isIntegralNumber() ? amount.longValue() : 0;
    }

    private static String keyOf(org.apache.kafka.streams.kstream.Windowed<String> window) {
        return "{\"key\":\"" + window.key() + "\",\"start\":" + window.window().start() + ",\"end\":"
                + window.window().end() + "}";
    }
}
