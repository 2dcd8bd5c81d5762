package dev.weir.oracle;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.JsonNodeFactory;
import com.fasterxml.jackson.databind.node.NullNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.io.BufferedReader;
import java.io.IOException;
import java.io.OutputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Properties;
import java.util.Set;
import org.apache.kafka.common.serialization.Deserializer;
import org.apache.kafka.common.serialization.Serde;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.common.serialization.Serializer;
import org.apache.kafka.common.utils.Bytes;
import org.apache.kafka.streams.StreamsBuilder;
import org.apache.kafka.streams.StreamsConfig;
import org.apache.kafka.streams.TestInputTopic;
import org.apache.kafka.streams.TestOutputTopic;
import org.apache.kafka.streams.TopologyTestDriver;
import org.apache.kafka.streams.kstream.Consumed;
import org.apache.kafka.streams.kstream.Grouped;
import org.apache.kafka.streams.kstream.KGroupedStream;
import org.apache.kafka.streams.kstream.KStream;
import org.apache.kafka.streams.kstream.KTable;
import org.apache.kafka.streams.kstream.Materialized;
import org.apache.kafka.streams.kstream.Produced;
import org.apache.kafka.streams.state.KeyValueStore;
import org.apache.kafka.streams.state.Stores;
import org.apache.kafka.streams.test.TestRecord;

/**
 * Kafka Streams oracle for weir's differential tests (issue 13).
 *
 * <p>Usage: {@code Oracle TOPOLOGY.json INPUT.jsonl [OUTPUT.jsonl|-]} runs one case;
 * {@code Oracle --manifest FILE} runs every line {@code TOPOLOGY INPUT OUTPUT} of FILE
 * (whitespace-separated paths, '#' comments) in this one JVM. Formats: tests/oracle/README.md.
 */
public final class Oracle {
    static final ObjectMapper JSON = new ObjectMapper();
    static final JsonNodeFactory NODES = JsonNodeFactory.instance;
    static final Set<String> OPS = Set.of("count", "sum", "min", "max", "reduce", "latest");
    static final Set<String> TOPOLOGY_KEYS = Set.of("op", "group_by", "field", "reducer");

    public static void main(String[] args) throws Exception {
        if (args.length == 2 && args[0].equals("--manifest")) {
            for (String line : Files.readAllLines(Path.of(args[1]), StandardCharsets.UTF_8)) {
                String t = line.strip();
                if (t.isEmpty() || t.startsWith("#")) continue;
                String[] p = t.split("\\s+");
                if (p.length != 3) throw new IllegalArgumentException("manifest line needs 3 paths: " + line);
                runCase(Path.of(p[0]), Path.of(p[1]), p[2]);
            }
        } else if (args.length == 2 || args.length == 3) {
            runCase(Path.of(args[0]), Path.of(args[1]), args.length == 3 ? args[2] : "-");
        } else {
            System.err.println("usage: Oracle TOPOLOGY INPUT [OUTPUT|-]  |  Oracle --manifest FILE");
            System.exit(2);
        }
    }

    /** A case: one fresh TopologyTestDriver, input piped in file order, output written in emission order. */
    static void runCase(Path topologyPath, Path inputPath, String outputPath) throws IOException {
        JsonNode topology = JSON.readTree(topologyPath.toFile());
        Properties props = new Properties();
        props.put(StreamsConfig.APPLICATION_ID_CONFIG, "weir-oracle");
        props.put(StreamsConfig.BOOTSTRAP_SERVERS_CONFIG, "unused:9092");
        props.put(StreamsConfig.STATESTORE_CACHE_MAX_BYTES_CONFIG, 0); // caches off: emit every update
        try (TopologyTestDriver driver = new TopologyTestDriver(build(topology), props)) {
            TestInputTopic<String, JsonNode> in = driver.createInputTopic(
                    "input", Serdes.String().serializer(), JSON_SERDE.serializer());
            TestOutputTopic<String, JsonNode> out = driver.createOutputTopic(
                    "output", Serdes.String().deserializer(), JSON_SERDE.deserializer());
            try (BufferedReader r = Files.newBufferedReader(inputPath, StandardCharsets.UTF_8)) {
                for (String line; (line = r.readLine()) != null; ) {
                    if (line.isBlank()) continue;
                    JsonNode rec = JSON.readTree(line);
                    JsonNode k = rec.get("key"), v = rec.get("value");
                    in.pipeInput(k == null || k.isNull() ? null : k.asText(),
                            v == null || v.isNull() ? null : v, rec.get("timestamp").asLong());
                }
            }
            boolean stdout = outputPath.equals("-");
            OutputStream os = stdout ? System.out : Files.newOutputStream(Path.of(outputPath));
            PrintStream ps = new PrintStream(os, false, StandardCharsets.UTF_8);
            for (TestRecord<String, JsonNode> rec : out.readRecordsToList()) {
                ObjectNode o = NODES.objectNode();
                o.put("key", rec.key());
                o.set("value", rec.value() == null ? NullNode.instance : rec.value());
                o.put("timestamp", rec.timestamp());
                ps.println(JSON.writeValueAsString(o));
            }
            ps.flush();
            if (!stdout) ps.close();
        }
    }

    /** Builds input -> groupBy/groupByKey -> aggregation -> output from the topology description. */
    static org.apache.kafka.streams.Topology build(JsonNode t) {
        t.fieldNames().forEachRemaining(k -> {
            if (!TOPOLOGY_KEYS.contains(k)) throw new IllegalArgumentException("unknown topology key: " + k);
        });
        String op = t.path("op").asText();
        if (!OPS.contains(op)) throw new IllegalArgumentException("unknown op: " + op);
        String field = t.path("field").isTextual() ? t.get("field").asText() : null;
        if (field == null && !op.equals("count") && !op.equals("latest"))
            throw new IllegalArgumentException(op + " needs \"field\"");
        StreamsBuilder b = new StreamsBuilder();
        KStream<String, JsonNode> s = b.stream("input", Consumed.with(Serdes.String(), JSON_SERDE));
        KGroupedStream<String, JsonNode> g;
        if (t.path("group_by").isTextual()) {
            String gb = t.get("group_by").asText();
            // A missing or null field gives a null key, which Kafka Streams drops.
            g = s.groupBy((k, v) -> keyOf(v == null ? null : v.get(gb)), Grouped.with(Serdes.String(), JSON_SERDE));
        } else {
            g = s.groupByKey(Grouped.with(Serdes.String(), JSON_SERDE));
        }
        KTable<String, JsonNode> table;
        switch (op) {
            case "count":
                table = g.count(store(Serdes.Long())).mapValues(n -> (JsonNode) NODES.numberNode(n));
                break;
            case "sum": case "min": case "max": {
                table = g.aggregate(() -> NullNode.instance,
                        (k, v, acc) -> combine(op, acc, num(v, field)), store(JSON_SERDE));
                break;
            }
            case "reduce": {
                // reduce(reducer): the newest value with `field` replaced by reducer(old.field, new.field).
                String red = t.path("reducer").asText("sum");
                table = g.reduce((a, v) -> {
                    ObjectNode o = ((ObjectNode) v).deepCopy();
                    o.set(field, combine(red, num(a, field), num(v, field)));
                    return o;
                }, store(JSON_SERDE));
                break;
            }
            default: // latest
                table = g.reduce((a, v) -> v, store(JSON_SERDE));
        }
        table.toStream().to("output", Produced.with(Serdes.String(), JSON_SERDE));
        return b.build();
    }

    static <V> Materialized<String, V, KeyValueStore<Bytes, byte[]>> store(Serde<V> vs) {
        return Materialized.<String, V>as(Stores.inMemoryKeyValueStore("agg"))
                .withKeySerde(Serdes.String()).withValueSerde(vs);
    }

    /** Key from a group-by field: string as its text, other scalars as canonical JSON, else null (dropped). */
    static String keyOf(JsonNode f) {
        if (f == null || f.isNull() || f.isContainerNode()) return null;
        return f.isTextual() ? f.asText() : f.toString();
    }

    static JsonNode num(JsonNode v, String field) {
        JsonNode n = v.get(field);
        if (n == null || !n.isNumber()) throw new IllegalArgumentException("field " + field + " not a number in " + v);
        return n.canConvertToLong() && n.isIntegralNumber() ? NODES.numberNode(n.asLong()) : NODES.numberNode(n.asDouble());
    }

    /** sum/min/max of two numbers: long if both are integral (overflow throws), else double. */
    static JsonNode combine(String op, JsonNode acc, JsonNode x) {
        if (acc == null || acc.isNull()) return x;
        boolean ints = acc.isIntegralNumber() && x.isIntegralNumber();
        switch (op) {
            case "sum":
                return ints ? NODES.numberNode(Math.addExact(acc.asLong(), x.asLong()))
                            : NODES.numberNode(acc.asDouble() + x.asDouble());
            case "min":
                if (ints) return acc.asLong() <= x.asLong() ? acc : x;
                return acc.asDouble() <= x.asDouble() ? acc : x;
            case "max":
                if (ints) return acc.asLong() >= x.asLong() ? acc : x;
                return acc.asDouble() >= x.asDouble() ? acc : x;
            default:
                throw new IllegalArgumentException("unknown reducer: " + op);
        }
    }

    /** Jackson JSON serde; null bytes are a null value (a tombstone). */
    static final Serde<JsonNode> JSON_SERDE = Serdes.serdeFrom(
            (Serializer<JsonNode>) (topic, v) -> {
                try { return v == null ? null : JSON.writeValueAsBytes(v); }
                catch (IOException e) { throw new RuntimeException(e); }
            },
            (Deserializer<JsonNode>) (topic, bytes) -> {
                try { return bytes == null ? null : JSON.readTree(bytes); }
                catch (IOException e) { throw new RuntimeException(e); }
            });

    private Oracle() {}
}
