package dev.weir.bench.kstreams;

import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/** The command line. Every option takes its value as {@code --name VALUE} or {@code --name=VALUE}. */
final class Args {
    static final String USAGE = """
            usage: java -jar kafka-streams-bench.jar --input-topic IN --output-topic OUT [options]

              --bootstrap-servers HOSTS   Kafka bootstrap servers (default 127.0.0.1:19092)
              --input-topic TOPIC         topic to read (required)
              --output-topic TOPIC        topic to write (required)
              --application-id ID         Kafka Streams application.id, also the consumer group
                                          (default weir-bench-kafka-streams)
              --threads N                 num.stream.threads (default 1)
              --commit-interval-ms MS     commit.interval.ms (default 1000)
              --close-timeout-ms MS       how long close may take after SIGTERM/SIGINT (default 30000)
              --topology NAME             filter-enrich (default), count-sum (group by user, count
                                          and sum amount, every update emitted), tumbling-count or
                                          hopping-sum (windows per key, final results: WindowedTopologies.java)
              --config-file FILE          Kafka Streams/client properties to add (repeatable)
              --property KEY=VALUE        one property to add (repeatable); files and properties are
                                          applied after the settings above, in order, and override them
              --help                      this text

            Prints `ready` on stdout once Kafka Streams is RUNNING; SIGTERM or SIGINT closes it and
            exits 0 (1: Kafka Streams failed, 2: bad command line, 3: close timed out).""";

    String bootstrapServers = "127.0.0.1:19092";
    String inputTopic;
    String outputTopic;
    String applicationId = "weir-bench-kafka-streams";
    int threads = 1;
    long commitIntervalMs = 1000;
    String topology = "filter-enrich";
    Duration closeTimeout = Duration.ofSeconds(30);
    final List<Path> configFiles = new ArrayList<>();
    final Map<String, String> overrides = new LinkedHashMap<>();
    boolean help;

    private Args() {}

    static Args parse(String[] argv) {
        Args a = new Args();
        for (int i = 0; i < argv.length; i++) {
            String arg = argv[i];
            if (arg.equals("--help") || arg.equals("-h")) {
                a.help = true;
                continue;
            }
            if (!arg.startsWith("--")) {
                throw new IllegalArgumentException("unexpected argument `" + arg + "`");
            }
            String name = arg;
            String value;
            int eq = arg.indexOf('=');
            if (eq > 0) {
                name = arg.substring(0, eq);
                value = arg.substring(eq + 1);
            } else if (i + 1 < argv.length) {
                value = argv[++i];
            } else {
                throw new IllegalArgumentException("`" + arg + "` needs a value");
            }
            switch (name) {
                case "--bootstrap-servers" -> a.bootstrapServers = nonEmpty(name, value);
                case "--input-topic" -> a.inputTopic = nonEmpty(name, value);
                case "--output-topic" -> a.outputTopic = nonEmpty(name, value);
                case "--application-id" -> a.applicationId = nonEmpty(name, value);
                case "--threads" -> a.threads = (int) positive(name, value, Integer.MAX_VALUE);
                case "--commit-interval-ms" -> a.commitIntervalMs = positive(name, value, Long.MAX_VALUE);
                case "--close-timeout-ms" -> a.closeTimeout = Duration.ofMillis(positive(name, value, Long.MAX_VALUE));
                case "--config-file" -> a.configFiles.add(Path.of(nonEmpty(name, value)));
                case "--topology" -> {
                    if (!java.util.Set.of("filter-enrich", "count-sum", "tumbling-count", "hopping-sum")
                            .contains(value)) {
                        throw new IllegalArgumentException(
                                "--topology is filter-enrich, count-sum, tumbling-count or hopping-sum");
                    }
                    a.topology = value;
                }
                case "--property" -> {
                    int sep = value.indexOf('=');
                    if (sep <= 0) {
                        throw new IllegalArgumentException("`--property` needs KEY=VALUE, got `" + value + "`");
                    }
                    a.overrides.put(value.substring(0, sep).trim(), value.substring(sep + 1));
                }
                default -> throw new IllegalArgumentException("unknown option `" + name + "`");
            }
        }
        if (!a.help) {
            if (a.inputTopic == null) {
                throw new IllegalArgumentException("`--input-topic` is required");
            }
            if (a.outputTopic == null) {
                throw new IllegalArgumentException("`--output-topic` is required");
            }
            if (a.inputTopic.equals(a.outputTopic)) {
                throw new IllegalArgumentException("input and output topics must differ");
            }
        }
        return a;
    }

    private static String nonEmpty(String name, String value) {
        if (value.isBlank()) {
            throw new IllegalArgumentException("`" + name + "` must not be empty");
        }
        return value;
    }

    private static long positive(String name, String value, long max) {
        long n;
        try {
            n = Long.parseLong(value.trim());
        } catch (NumberFormatException e) {
            throw new IllegalArgumentException("`" + name + "` must be a number, got `" + value + "`");
        }
        if (n < 1 || n > max) {
            throw new IllegalArgumentException("`" + name + "` must be between 1 and " + max + ", got " + n);
        }
        return n;
    }
}
