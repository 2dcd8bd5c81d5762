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
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Properties;
import java.util.Set;
import org.apache.kafka.common.serialization.Deserializer;
import org.apache.kafka.common.serialization.Serde;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.common.serialization.Serializer;
import org.apache.kafka.common.utils.Bytes;
import org.apache.kafka.streams.KeyValue;
import org.apache.kafka.streams.StreamsBuilder;
import org.apache.kafka.streams.StreamsConfig;
import org.apache.kafka.streams.TestInputTopic;
import org.apache.kafka.streams.TestOutputTopic;
import org.apache.kafka.streams.TopologyTestDriver;
import org.apache.kafka.streams.kstream.Consumed;
import org.apache.kafka.streams.kstream.Grouped;
import org.apache.kafka.streams.kstream.KGroupedStream;
import org.apache.kafka.streams.kstream.KGroupedTable;
import org.apache.kafka.streams.kstream.KStream;
import org.apache.kafka.streams.kstream.KTable;
import org.apache.kafka.streams.kstream.Materialized;
import org.apache.kafka.streams.kstream.Produced;
import org.apache.kafka.streams.kstream.SessionWindowedKStream;
import org.apache.kafka.streams.kstream.SessionWindows;
import org.apache.kafka.streams.kstream.SlidingWindows;
import org.apache.kafka.streams.kstream.Suppressed;
import org.apache.kafka.streams.kstream.TimeWindowedKStream;
import org.apache.kafka.streams.kstream.TimeWindows;
import org.apache.kafka.streams.kstream.Windowed;
import org.apache.kafka.streams.kstream.WindowedSerdes;
import org.apache.kafka.streams.state.KeyValueStore;
import org.apache.kafka.streams.state.Stores;
import org.apache.kafka.streams.state.SessionStore;
import org.apache.kafka.streams.state.WindowStore;
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
    static final Set<String> OPS = Set.of("count", "sum", "min", "max", "avg", "reduce", "latest");
    static final Set<String> TOPOLOGY_KEYS = Set.of("time_field", "op", "group_by", "field", "reducer", "aggregations", "table",
            "window", "emit");
    static final Set<String> WINDOW_KEYS = Set.of("size", "advance", "grace", "gap", "retention", "difference");
    /** The functions of an `aggregations` topology (weir's built-in aggregations). */
    static final Set<String> AGGREGATIONS = Set.of("count", "sum", "min", "max", "avg");

    public static void main(String[] args) throws Exception {
        if (args.length == 2 && args[0].equals("--manifest")) {
            for (String line : Files.readAllLines(Path.of(args[1]), StandardCharsets.UTF_8)) {
                String t = line.strip();
                if (t.isEmpty() || t.startsWith("#")) continue;
                String[] p = t.split("\\s+");
                if (p.length != 3) throw new IllegalArgumentException("manifest line needs 3 paths: " + line);
                runCase(Path.of(p[0]), Path.of(p[1]), p[2]);
            }
        } else if (args.length == 3 && args[0].equals("--windowed-keys")) {
            decodeWindowedKeys(args[1], Long.parseLong(args[2]));
        } else if (args.length == 2 || args.length == 3) {
            runCase(Path.of(args[0]), Path.of(args[1]), args.length == 3 ? args[2] : "-");
        } else {
            System.err.println("usage: Oracle TOPOLOGY INPUT [OUTPUT|-]  |  Oracle --manifest FILE"
                    + "  |  Oracle --windowed-keys time|session WINDOW_SIZE_MS < HEX_KEYS");
            System.exit(2);
        }
    }

    /**
     * Reads windowed keys (hex, one per line) from stdin with Kafka Streams' own {@code WindowedSerdes}
     * (String inner keys; time windows of {@code size} ms, or sessions) and prints each as weir's JSON
     * windowed key: what a Java consumer of a weir sink with {@code windowed-key: kafka-streams} sees.
     */
    static void decodeWindowedKeys(String form, long size) throws IOException {
        Deserializer<Windowed<String>> d = switch (form) {
            case "time" -> WindowedSerdes.timeWindowedSerdeFrom(String.class, size).deserializer();
            case "session" -> WindowedSerdes.sessionWindowedSerdeFrom(String.class).deserializer();
            default -> throw new IllegalArgumentException("form must be time or session: " + form);
        };
        BufferedReader in = new BufferedReader(new java.io.InputStreamReader(System.in, StandardCharsets.UTF_8));
        for (String line = in.readLine(); line != null; line = in.readLine()) {
            String hex = line.strip();
            if (hex.isEmpty()) continue;
            byte[] bytes = java.util.HexFormat.of().parseHex(hex);
            Windowed<String> w = d.deserialize("topic", bytes);
            System.out.println(windowedKey(w));
        }
    }

    /** The last input read: consecutive cases of a manifest usually share their input. */
    static Path lastInputPath;
    static List<TestRecord<String, JsonNode>> lastInput;

    /** The records of an input file (JSON lines; blank lines skipped), read once for consecutive cases. */
    static List<TestRecord<String, JsonNode>> input(Path path) throws IOException {
        if (path.equals(lastInputPath)) return lastInput;
        List<TestRecord<String, JsonNode>> records = new ArrayList<>();
        try (BufferedReader r = Files.newBufferedReader(path, StandardCharsets.UTF_8)) {
            for (String line; (line = r.readLine()) != null; ) {
                if (line.isBlank()) continue;
                JsonNode rec = JSON.readTree(line);
                JsonNode k = rec.get("key"), v = rec.get("value");
                // The driver serializes what it is given, so cases never share these nodes' state.
                records.add(new TestRecord<>(k == null || k.isNull() ? null : k.asText(),
                        v == null || v.isNull() ? null : v, java.time.Instant.ofEpochMilli(rec.get("timestamp").asLong())));
            }
        }
        lastInputPath = path;
        lastInput = records;
        return records;
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
            // A windowed case also writes, per input record that raised Kafka Streams' task-level
            // `dropped-records-total` (a window skipped as closed, a null key), how much it rose.
            boolean windowed = topology.has("window");
            StringBuilder drops = new StringBuilder();
            double droppedBefore = 0;
            int index = 0;
            for (TestRecord<String, JsonNode> rec : input(inputPath)) {
                in.pipeInput(rec.key(), rec.value(), rec.timestamp());
                if (windowed) {
                    double now = droppedTotal(driver);
                    if (now > droppedBefore)
                        drops.append("{\"input\":").append(index).append(",\"dropped\":")
                                .append((long) (now - droppedBefore)).append("}\n");
                    droppedBefore = now;
                }
                index++;
            }
            if (windowed && !outputPath.equals("-"))
                Files.writeString(Path.of(outputPath + ".dropped"), drops.toString(), StandardCharsets.UTF_8);
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

    /** The sum of every task's `dropped-records-total` metric. */
    static double droppedTotal(TopologyTestDriver driver) {
        double total = 0;
        for (var e : driver.metrics().entrySet()) {
            var name = e.getKey();
            if (name.name().equals("dropped-records-total") && name.group().equals("stream-task-metrics"))
                total += ((Number) e.getValue().metricValue()).doubleValue();
        }
        return total;
    }

    /**
     * A windowed aggregation: `window` {"size", "advance" (default: size), "grace" (default 0)} in ms
     * gives TimeWindows; `emit` "final" adds suppress(untilWindowCloses(unbounded())). The output key
     * is weir's windowed key, {"key":K,"start":S,"end":E}.
     */
    static KTable<Windowed<String>, JsonNode> buildWindowed(KGroupedStream<String, JsonNode> g, JsonNode t,
            boolean multi, String op, String field) {
        JsonNode w = t.get("window");
        w.fieldNames().forEachRemaining(k -> {
            if (!WINDOW_KEYS.contains(k)) throw new IllegalArgumentException("unknown window key: " + k);
        });
        if (w.has("gap")) return buildSessions(g, t, multi, op, field);
        long grace = w.path("grace").asLong(0);
        TimeWindowedKStream<String, JsonNode> tw;
        long size;
        Duration retention;
        if (w.has("difference")) {
            // SlidingWindows: windows [start, start + difference], both ends included.
            long difference = w.get("difference").asLong();
            size = difference;
            tw = g.windowedBy(SlidingWindows.ofTimeDifferenceAndGrace(
                    Duration.ofMillis(difference), Duration.ofMillis(grace)));
            retention = Duration.ofMillis(w.path("retention").asLong(2 * difference + grace));
        } else {
            size = w.get("size").asLong();
            long advance = w.path("advance").asLong(size);
            tw = g.windowedBy(TimeWindows.ofSizeAndGrace(Duration.ofMillis(size), Duration.ofMillis(grace))
                    .advanceBy(Duration.ofMillis(advance)));
            retention = Duration.ofMillis(w.path("retention").asLong(size + grace));
        }
        Serde<Windowed<String>> wkSerde = WindowedSerdes.timeWindowedSerdeFrom(String.class, size);
        Materialized<Windowed<String>, JsonNode, KeyValueStore<Bytes, byte[]>> shown =
                Materialized.with(wkSerde, JSON_SERDE);
        KTable<Windowed<String>, JsonNode> table;
        if (multi) {
            JsonNode aggs = t.get("aggregations");
            table = tw.aggregate(() -> (JsonNode) NODES.objectNode(),
                    (k, v, acc) -> addAll(aggs, (ObjectNode) acc, v), windowStore(JSON_SERDE, retention, size))
                    .mapValues(acc -> results(aggs, (ObjectNode) acc), shown);
        } else switch (op) {
            case "count":
                table = tw.count(windowStore(Serdes.Long(), retention, size))
                        .mapValues(n -> (JsonNode) NODES.numberNode(n), shown);
                break;
            case "sum": case "min": case "max":
                table = tw.aggregate(() -> NullNode.instance,
                        (k, v, acc) -> combine(op, acc, num(v, field)), windowStore(JSON_SERDE, retention, size));
                break;
            case "avg": {
                JsonNode spec = NODES.objectNode().put("avg", field);
                table = tw.aggregate(() -> NullNode.instance, (k, v, acc) -> add(spec, acc, v),
                        windowStore(JSON_SERDE, retention, size)).mapValues(acc -> result(spec, acc), shown);
                break;
            }
            case "reduce": {
                String red = t.path("reducer").asText("sum");
                table = tw.reduce((a, v) -> {
                    ObjectNode o = ((ObjectNode) v).deepCopy();
                    o.set(field, combine(red, num(a, field), num(v, field)));
                    return o;
                }, windowStore(JSON_SERDE, retention, size));
                break;
            }
            default: // latest
                table = tw.reduce((a, v) -> v, windowStore(JSON_SERDE, retention, size));
        }
        return emitted(t, table);
    }

    /** `emit`: "changes" as it is, "final" through suppress(untilWindowCloses(unbounded())). */
    static KTable<Windowed<String>, JsonNode> emitted(JsonNode t, KTable<Windowed<String>, JsonNode> table) {
        String emit = t.path("emit").asText("changes");
        if (emit.equals("final"))
            return table.suppress(Suppressed.untilWindowCloses(Suppressed.BufferConfig.unbounded()));
        if (!emit.equals("changes")) throw new IllegalArgumentException("unknown emit: " + emit);
        return table;
    }

    /**
     * Session windows: `window` {"gap", "grace" (default 0)} in ms gives SessionWindows; merged
     * sessions are emitted as tombstones (with `emit` "changes"). The merger of each op is what
     * weir's Fold::merge does: counts and sums add, min/max keep the winner (the earlier on a tie),
     * avg adds sums and counts; reduce merges with its reducer (Kafka Streams' own).
     */
    static KTable<Windowed<String>, JsonNode> buildSessions(KGroupedStream<String, JsonNode> g, JsonNode t,
            boolean multi, String op, String field) {
        JsonNode w = t.get("window");
        long gap = w.get("gap").asLong();
        long grace = w.path("grace").asLong(0);
        SessionWindowedKStream<String, JsonNode> sw = g.windowedBy(
                SessionWindows.ofInactivityGapAndGrace(Duration.ofMillis(gap), Duration.ofMillis(grace)));
        Serde<Windowed<String>> wkSerde = WindowedSerdes.sessionWindowedSerdeFrom(String.class);
        Materialized<Windowed<String>, JsonNode, KeyValueStore<Bytes, byte[]>> shown =
                Materialized.with(wkSerde, JSON_SERDE);
        Duration retention = Duration.ofMillis(w.path("retention").asLong(gap + grace));
        KTable<Windowed<String>, JsonNode> table;
        if (multi) {
            JsonNode aggs = t.get("aggregations");
            table = sw.aggregate(() -> (JsonNode) NODES.objectNode(),
                    (k, v, acc) -> addAll(aggs, (ObjectNode) acc, v),
                    (k, a, b) -> mergeAll(aggs, (ObjectNode) a, (ObjectNode) b), sessionStore(JSON_SERDE, retention))
                    .mapValues(acc -> results(aggs, (ObjectNode) acc), shown);
        } else switch (op) {
            case "count":
                table = sw.count(sessionStore(Serdes.Long(), retention))
                        .mapValues(n -> n == null ? null : (JsonNode) NODES.numberNode(n), shown);
                break;
            case "sum": case "min": case "max":
                table = sw.aggregate(() -> NullNode.instance,
                        (k, v, acc) -> combine(op, acc, num(v, field)),
                        (k, a, b) -> combine(op, a, b), sessionStore(JSON_SERDE, retention));
                break;
            case "avg": {
                JsonNode spec = NODES.objectNode().put("avg", field);
                table = sw.aggregate(() -> NullNode.instance, (k, v, acc) -> add(spec, acc, v),
                        (k, a, b) -> merge(spec, a, b), sessionStore(JSON_SERDE, retention))
                        .mapValues(acc -> result(spec, acc), shown);
                break;
            }
            case "reduce": {
                String red = t.path("reducer").asText("sum");
                table = sw.reduce((a, v) -> {
                    ObjectNode o = ((ObjectNode) v).deepCopy();
                    o.set(field, combine(red, num(a, field), num(v, field)));
                    return o;
                }, sessionStore(JSON_SERDE, retention));
                break;
            }
            default: // latest
                table = sw.reduce((a, v) -> v, sessionStore(JSON_SERDE, retention));
        }
        return emitted(t, table);
    }

    static <V> Materialized<String, V, SessionStore<Bytes, byte[]>> sessionStore(Serde<V> vs, Duration retention) {
        return Materialized.<String, V>as(Stores.inMemorySessionStore("agg", retention))
                .withKeySerde(Serdes.String()).withValueSerde(vs);
    }

    /** Merges two sessions' accumulators of every aggregation (a new object). */
    static JsonNode mergeAll(JsonNode aggs, ObjectNode a, ObjectNode b) {
        ObjectNode next = NODES.objectNode();
        aggs.fields().forEachRemaining(e -> next.set(e.getKey(), merge(e.getValue(), a.get(e.getKey()), b.get(e.getKey()))));
        return next;
    }

    /** One aggregation's accumulators merged: count and sum add, min/max combine, avg adds both parts. */
    static JsonNode merge(JsonNode spec, JsonNode a, JsonNode b) {
        if (a == null || a.isNull()) return b;
        if (b == null || b.isNull()) return a;
        if (spec.isTextual()) return NODES.numberNode(a.asLong() + b.asLong()); // count
        String fn = spec.fieldNames().next();
        if (!fn.equals("avg")) return combine(fn, a, b);
        ObjectNode m = NODES.objectNode();
        m.set("sum", combine("sum", a.get("sum"), b.get("sum")));
        m.put("count", a.get("count").asLong() + b.get("count").asLong());
        return m;
    }

    static <V> Materialized<String, V, WindowStore<Bytes, byte[]>> windowStore(Serde<V> vs, Duration retention,
            long size) {
        return Materialized.<String, V>as(
                        Stores.inMemoryWindowStore("agg", retention, Duration.ofMillis(size), false))
                .withKeySerde(Serdes.String()).withValueSerde(vs);
    }

    /** weir's windowed key: {"key":K,"start":S,"end":E}, compact, in that order. */
    static String windowedKey(Windowed<String> wk) {
        ObjectNode o = NODES.objectNode();
        o.put("key", wk.key());
        o.put("start", wk.window().start());
        o.put("end", wk.window().end());
        try { return JSON.writeValueAsString(o); }
        catch (IOException e) { throw new RuntimeException(e); }
    }

    /** Builds input -> groupBy/groupByKey -> aggregation -> output from the topology description. */
    static org.apache.kafka.streams.Topology build(JsonNode t) {
        t.fieldNames().forEachRemaining(k -> {
            if (!TOPOLOGY_KEYS.contains(k)) throw new IllegalArgumentException("unknown topology key: " + k);
        });
        boolean multi = t.has("aggregations");
        String op = t.path("op").asText();
        String field = t.path("field").isTextual() ? t.get("field").asText() : null;
        if (multi) {
            if (t.has("op") || t.has("field") || t.has("reducer"))
                throw new IllegalArgumentException("\"aggregations\" replaces \"op\", \"field\" and \"reducer\"");
            checkAggregations(t.get("aggregations"));
        } else {
            if (!OPS.contains(op)) throw new IllegalArgumentException("unknown op: " + op);
            if (field == null && !op.equals("count") && !op.equals("latest"))
                throw new IllegalArgumentException(op + " needs \"field\"");
        }
        StreamsBuilder b = new StreamsBuilder();
        if (t.path("table").asBoolean(false)) {
            buildTable(b, t, multi, op, field).toStream().to("output", Produced.with(Serdes.String(), JSON_SERDE));
            return b.build();
        }
        Consumed<String, JsonNode> consumed = Consumed.with(Serdes.String(), JSON_SERDE);
        if (t.path("time_field").isTextual()) {
            // The seed's custom TimestampExtractor: the time in a field of the value; a record
            // without one takes the partition's time (UsePartitionTimeOnInvalidTimestamp's rule),
            // or is dropped while the partition has none (-1).
            String timeField = t.get("time_field").asText();
            consumed = consumed.withTimestampExtractor((rec, partitionTime) -> {
                JsonNode at = rec.value() instanceof JsonNode v ? v.get(timeField) : null;
                return at != null && at.canConvertToLong() && at.isIntegralNumber() && at.asLong() >= 0
                        ? at.asLong() : partitionTime;
            });
        }
        KStream<String, JsonNode> s = b.stream("input", consumed);
        KGroupedStream<String, JsonNode> g;
        if (t.path("group_by").isTextual()) {
            String[] path = t.get("group_by").asText().split("\\.");
            // A missing or null field gives a null key, which Kafka Streams drops.
            g = s.groupBy((k, v) -> keyOf(at(v, path)), Grouped.with(Serdes.String(), JSON_SERDE));
        } else {
            g = s.groupByKey(Grouped.with(Serdes.String(), JSON_SERDE));
        }
        if (t.has("window")) {
            buildWindowed(g, t, multi, op, field).toStream()
                    .map((wk, v) -> KeyValue.pair(windowedKey(wk), v))
                    .to("output", Produced.with(Serdes.String(), JSON_SERDE));
            return b.build();
        }
        if (t.has("emit")) throw new IllegalArgumentException("\"emit\" needs \"window\"");
        KTable<String, JsonNode> table;
        if (multi) {
            JsonNode aggs = t.get("aggregations");
            table = g.aggregate(() -> (JsonNode) NODES.objectNode(),
                    (k, v, acc) -> addAll(aggs, (ObjectNode) acc, v), store(JSON_SERDE))
                    .mapValues(acc -> results(aggs, (ObjectNode) acc));
        } else switch (op) {
            case "count":
                table = g.count(store(Serdes.Long())).mapValues(n -> (JsonNode) NODES.numberNode(n));
                break;
            case "sum": case "min": case "max": {
                table = g.aggregate(() -> NullNode.instance,
                        (k, v, acc) -> combine(op, acc, num(v, field)), store(JSON_SERDE));
                break;
            }
            case "avg": {
                JsonNode spec = NODES.objectNode().put("avg", field);
                table = g.aggregate(() -> NullNode.instance,
                        (k, v, acc) -> add(spec, acc, v), store(JSON_SERDE)).mapValues(acc -> result(spec, acc));
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

    /**
     * A table aggregation: input read as a KTable, its rows grouped (KTable#groupBy, by a field or by
     * the row's key) and aggregated with an adder and a subtractor. Only what can be subtracted:
     * count, sum, avg, reduce with reducer sum.
     */
    static KTable<String, JsonNode> buildTable(StreamsBuilder b, JsonNode t, boolean multi, String op, String field) {
        KTable<String, JsonNode> rows = b.table("input", Consumed.with(Serdes.String(), JSON_SERDE));
        String[] path = t.path("group_by").isTextual() ? t.get("group_by").asText().split("\\.") : null;
        // A null key (a missing or bad field) skips that side of the update, as Kafka Streams does.
        KGroupedTable<String, JsonNode> g = rows.groupBy(
                (k, v) -> KeyValue.pair(path == null ? k : keyOf(at(v, path)), v),
                Grouped.with(Serdes.String(), JSON_SERDE));
        if (multi) {
            JsonNode aggs = t.get("aggregations");
            aggs.fields().forEachRemaining(e -> {
                JsonNode spec = e.getValue();
                if (spec.isObject() && !spec.has("sum") && !spec.has("avg"))
                    throw new IllegalArgumentException("a table cannot subtract " + spec);
            });
            return g.aggregate(() -> (JsonNode) NODES.objectNode(),
                    (k, v, acc) -> addAll(aggs, (ObjectNode) acc, v),
                    (k, v, acc) -> subtractAll(aggs, (ObjectNode) acc, v), store(JSON_SERDE))
                    .mapValues(acc -> results(aggs, (ObjectNode) acc));
        }
        if (!op.equals("reduce") || !t.path("reducer").asText("sum").equals("sum"))
            throw new IllegalArgumentException("a table cannot subtract op " + op);
        return g.reduce((a, v) -> {
            ObjectNode o = ((ObjectNode) v).deepCopy();
            o.set(field, combine("sum", num(a, field), num(v, field)));
            return o;
        }, (a, old) -> {
            ObjectNode o = ((ObjectNode) a).deepCopy();
            o.set(field, subtract(num(a, field), num(old, field)));
            return o;
        }, store(JSON_SERDE));
    }

    /** Takes record `v` out of every aggregation's accumulator (a new object). */
    static JsonNode subtractAll(JsonNode aggs, ObjectNode acc, JsonNode v) {
        ObjectNode next = acc.deepCopy();
        aggs.fields().forEachRemaining(e -> {
            JsonNode spec = e.getValue(), a = acc.get(e.getKey());
            if (spec.isTextual()) { next.put(e.getKey(), a.asLong() - 1); return; } // count
            String fn = spec.fieldNames().next();
            JsonNode x = num(v, spec.get(fn).asText());
            if (fn.equals("sum")) { next.set(e.getKey(), subtract(a, x)); return; }
            ObjectNode avg = NODES.objectNode(); // avg
            avg.set("sum", subtract(a.get("sum"), x));
            avg.put("count", a.get("count").asLong() - 1);
            next.set(e.getKey(), avg);
        });
        return next;
    }

    /** acc - x: long if both are integral (overflow throws), else double. */
    static JsonNode subtract(JsonNode acc, JsonNode x) {
        return acc.isIntegralNumber() && x.isIntegralNumber()
                ? NODES.numberNode(Math.subtractExact(acc.asLong(), x.asLong()))
                : NODES.numberNode(acc.asDouble() - x.asDouble());
    }

    /** `aggregations`: name -> "count" | {"sum"|"min"|"max"|"avg": field}, as in a weir pipeline file. */
    static void checkAggregations(JsonNode aggs) {
        if (aggs == null || !aggs.isObject() || aggs.isEmpty())
            throw new IllegalArgumentException("\"aggregations\" must be a non-empty object");
        aggs.fields().forEachRemaining(e -> {
            JsonNode spec = e.getValue();
            boolean ok = spec.isTextual() ? spec.asText().equals("count")
                    : spec.isObject() && spec.size() == 1 && AGGREGATIONS.contains(spec.fieldNames().next())
                            && !spec.fieldNames().next().equals("count") && spec.elements().next().isTextual();
            if (!ok) throw new IllegalArgumentException("aggregation " + e.getKey() + ": expected \"count\" or "
                    + "{\"sum\"|\"min\"|\"max\"|\"avg\": FIELD}, got " + spec);
        });
    }

    /** Adds record `v` to every aggregation's accumulator (a new object; the store keeps the old one). */
    static JsonNode addAll(JsonNode aggs, ObjectNode acc, JsonNode v) {
        ObjectNode next = acc.deepCopy();
        aggs.fields().forEachRemaining(e -> next.set(e.getKey(), add(e.getValue(), acc.get(e.getKey()), v)));
        return next;
    }

    /** One aggregation's accumulator after `v`: count a long, sum/min/max a number, avg {"sum": n, "count": c}. */
    static JsonNode add(JsonNode spec, JsonNode acc, JsonNode v) {
        boolean none = acc == null || acc.isNull();
        if (spec.isTextual()) return NODES.numberNode(none ? 1L : acc.asLong() + 1); // count
        String fn = spec.fieldNames().next();
        JsonNode x = num(v, spec.get(fn).asText());
        if (!fn.equals("avg")) return combine(fn, acc, x);
        ObjectNode a = NODES.objectNode();
        a.set("sum", combine("sum", none ? null : acc.get("sum"), x));
        a.put("count", none ? 1L : acc.get("count").asLong() + 1);
        return a;
    }

    /** The output object: each aggregation's result, in declared order; avg is sum / count as a double. */
    static JsonNode results(JsonNode aggs, ObjectNode acc) {
        ObjectNode out = NODES.objectNode();
        aggs.fields().forEachRemaining(e -> out.set(e.getKey(), result(e.getValue(), acc.get(e.getKey()))));
        return out;
    }

    static JsonNode result(JsonNode spec, JsonNode acc) {
        // A windowed aggregation's old value is its initializer's (nothing aggregated yet).
        if (acc == null || acc.isNull()) return NullNode.instance;
        if (spec.isObject() && spec.fieldNames().next().equals("avg")) {
            long count = acc.get("count").asLong();
            // weir's average of nothing (a table group whose rows all left) is null, where a
            // double division would give NaN, which JSON cannot hold.
            if (count == 0) return NullNode.instance;
            return NODES.numberNode(acc.get("sum").asDouble() / count);
        }
        return acc;
    }

    /** The node at a dotted path of `v` (`user.id`), or null when a step is missing or not an object. */
    static JsonNode at(JsonNode v, String[] path) {
        for (String p : path) {
            if (v == null || !v.isObject()) return null;
            v = v.get(p);
        }
        return v;
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

    /** The number at `field` (a dotted path) of `v`: a long if it is an integer, else a double. */
    static JsonNode num(JsonNode v, String field) {
        JsonNode n = at(v, field.split("\\."));
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
