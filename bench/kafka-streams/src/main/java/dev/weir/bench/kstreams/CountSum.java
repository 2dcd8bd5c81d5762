package dev.weir.bench.kstreams;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.util.Properties;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.streams.StreamsBuilder;
import org.apache.kafka.streams.StreamsConfig;
import org.apache.kafka.streams.Topology;
import org.apache.kafka.streams.TopologyConfig;
import org.apache.kafka.streams.kstream.Consumed;
import org.apache.kafka.streams.kstream.Grouped;
import org.apache.kafka.streams.kstream.Materialized;
import org.apache.kafka.streams.kstream.Named;
import org.apache.kafka.streams.kstream.Produced;

/**
 * Kafka Streams peer of weir's stateful benchmark pipeline ({@code group-by} on the JSON field
 * {@code user}, then {@code aggregate} with {@code n: count, total: {sum: amount}}): the record
 * goes, whole, through the repartition topic {@code <app>-totals-repartition} to the task of its
 * user, whose RocksDB store {@code totals} (changelog {@code <app>-totals-changelog}) keeps the
 * count and the sum; every update is written to OUT as {@code {"n":N,"total":T}} keyed by user.
 * Run with {@code statestore.cache.max.bytes=0} so that, as weir, it emits every update.
 */
final class CountSum {
    private CountSum() {}

    static Topology topology(Properties props, String inputTopic, String outputTopic) {
        StreamsBuilder builder = new StreamsBuilder(new TopologyConfig(new StreamsConfig(props)));
        builder.stream(inputTopic, Consumed.with(Serdes.String(), Serdes.ByteArray()).withName("in"))
                .filter((key, value) -> userOf(key, value) != null, Named.as("has-user"))
                .groupBy((key, value) -> userOf(key, value),
                        Grouped.with("totals", Serdes.String(), Serdes.ByteArray()))
                .aggregate(() -> new byte[16], CountSum::add,
                        Named.as("totals-aggregate"),
                        Materialized.<String, byte[], org.apache.kafka.streams.state.KeyValueStore<
                                org.apache.kafka.common.utils.Bytes, byte[]>>as("totals")
                                .withKeySerde(Serdes.String())
                                .withValueSerde(Serdes.ByteArray()))
                .toStream(Named.as("updates"))
                .mapValues(CountSum::render, Named.as("render"))
                .to(outputTopic, Produced.with(Serdes.String(), Serdes.ByteArray()).withName("out"));
        return builder.build(props);
    }

    /** The record's {@code user} (a JSON string field), or null when it has none. */
    private static String userOf(String key, byte[] value) {
        ObjectNode object = JsonSteps.parseObject(key, value);
        if (object == null) {
            return null;
        }
        JsonNode user = object.get("user");
        return user != null && user.isTextual() ? user.asText() : null;
    }

    /** count + 1, sum + amount, in the 16-byte accumulator (two longs). */
    private static byte[] add(String user, byte[] value, byte[] accumulator) {
        ObjectNode object = JsonSteps.parseObject(user, value);
        JsonNode amount = object == null ? null : object.get(JsonSteps.AMOUNT_FIELD);
        long add = amount != null && amount.isIntegralNumber() ? amount.longValue() : 0;
        ByteBuffer in = ByteBuffer.wrap(accumulator);
        long count = in.getLong(0);
        long sum = in.getLong(8);
        return ByteBuffer.allocate(16).putLong(count + 1).putLong(sum + add).array();
    }

    private static byte[] render(byte[] accumulator) {
        ByteBuffer in = ByteBuffer.wrap(accumulator);
        return ("{\"n\":" + in.getLong(0) + ",\"total\":" + in.getLong(8) + "}")
                .getBytes(StandardCharsets.UTF_8);
    }
}
