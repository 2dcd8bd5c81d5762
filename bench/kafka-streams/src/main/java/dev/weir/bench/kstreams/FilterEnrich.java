package dev.weir.bench.kstreams;

import java.io.IOException;
import java.io.InputStream;
import java.io.PrintStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Comparator;
import java.util.List;
import java.util.Properties;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.stream.Stream;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.streams.CloseOptions;
import org.apache.kafka.streams.KafkaStreams;
import org.apache.kafka.streams.StreamsBuilder;
import org.apache.kafka.streams.StreamsConfig;
import org.apache.kafka.streams.Topology;
import org.apache.kafka.streams.TopologyConfig;
import org.apache.kafka.streams.errors.StreamsUncaughtExceptionHandler.StreamThreadExceptionResponse;
import org.apache.kafka.streams.kstream.Consumed;
import org.apache.kafka.streams.kstream.Named;
import org.apache.kafka.streams.kstream.Produced;
import org.apache.kafka.streams.processor.StateRestoreListener;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;
import sun.misc.Signal;

/**
 * Kafka Streams peer of weir's {@code json-filter -> enricher} pipeline: reads IN, keeps JSON
 * objects whose {@code amount >= 100}, adds {@code "checked": true}, writes OUT with the same key.
 * See README.md for the command line and the exit codes.
 */
public final class FilterEnrich {
    private static final Logger LOG = LoggerFactory.getLogger(FilterEnrich.class);

    static final int EXIT_OK = 0;
    static final int EXIT_ERROR = 1;
    static final int EXIT_USAGE = 2;
    static final int EXIT_CLOSE_TIMEOUT = 3;

    /** Producer batch.size: librdkafka's default, which weir's Kafka sink uses. */
    static final int PRODUCER_BATCH_BYTES = 1_000_000;

    private FilterEnrich() {}

    /** The topology: source, three stateless processors, sink; one sub-topology, no state. */
    static Topology topology(Properties props, String inputTopic, String outputTopic) {
        StreamsBuilder builder = new StreamsBuilder(new TopologyConfig(new StreamsConfig(props)));
        builder.stream(inputTopic, Consumed.with(Serdes.String(), Serdes.ByteArray()).withName("in"))
                .mapValues(JsonSteps::parseObject, Named.as("parse-json"))
                .filter((key, object) -> object != null && JsonSteps.amountAtLeastMin(object),
                        Named.as("json-filter"))
                .mapValues(JsonSteps::markChecked, Named.as("enricher"))
                .to(outputTopic, Produced.with(Serdes.String(), Serdes.ByteArray()).withName("out"));
        return builder.build(props);
    }

    public static void main(String[] argv) {
        Args args;
        try {
            args = Args.parse(argv);
        } catch (IllegalArgumentException e) {
            System.err.println("kafka-streams-bench: " + e.getMessage());
            System.err.println(Args.USAGE);
            System.exit(EXIT_USAGE);
            return;
        }
        if (args.help) {
            System.out.println(Args.USAGE);
            System.exit(EXIT_OK);
            return;
        }
        int code;
        try {
            code = run(args);
        } catch (Exception e) {
            LOG.error("kafka-streams-bench failed", e);
            code = EXIT_ERROR;
        }
        System.exit(code);
    }

    static int run(Args args) throws IOException, InterruptedException {
        // state.dir: a fresh temporary folder, unless the command line names one (--property
        // state.dir=...: the restore benchmark starts a second run on the first one's state).
        if (args.overrides.containsKey(StreamsConfig.STATE_DIR_CONFIG)) {
            return runWith(args, config(args, Path.of(args.overrides.get(StreamsConfig.STATE_DIR_CONFIG))));
        }
        Path stateDir = Files.createTempDirectory("weir-kstreams-state-");
        try {
            return runWith(args, config(args, stateDir));
        } finally {
            deleteTree(stateDir);
        }
    }

    static Properties config(Args args, Path stateDir) throws IOException {
        Properties props = new Properties();
        props.put(StreamsConfig.APPLICATION_ID_CONFIG, args.applicationId);
        props.put(StreamsConfig.BOOTSTRAP_SERVERS_CONFIG, args.bootstrapServers);
        props.put(StreamsConfig.NUM_STREAM_THREADS_CONFIG, Integer.toString(args.threads));
        props.put(StreamsConfig.COMMIT_INTERVAL_MS_CONFIG, Long.toString(args.commitIntervalMs));
        props.put(StreamsConfig.PROCESSING_GUARANTEE_CONFIG, StreamsConfig.AT_LEAST_ONCE);
        props.put(StreamsConfig.STATE_DIR_CONFIG, stateDir.toString());
        // Kafka Streams' own default, spelled out: a fresh application id reads IN from the start.
        props.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
        // The one tuning beyond Kafka Streams' defaults: producer batches of up to 1 MB instead of
        // 16 KiB, the batch size of weir's producer (librdkafka's default batch.size). With ~150-byte
        // records a 16 KiB batch holds ~100 records; measured on the 2-core bench machine, 1 MB
        // batches cut this app's CPU per record by about a quarter and the broker's by two thirds.
        // Override with --property producer.batch.size=16384 to run pure defaults.
        props.put(StreamsConfig.producerPrefix(ProducerConfig.BATCH_SIZE_CONFIG),
                Integer.toString(PRODUCER_BATCH_BYTES));
        // There is no global state here, so this changes no behaviour: it only cuts Kafka 4.3's
        // start-up WARN recommending it from three copies to one (it is the default from Kafka 5.0;
        // the copy left is logged by KafkaStreams from a config of its own).
        props.put(StreamsConfig.PROCESSING_EXCEPTION_HANDLER_GLOBAL_ENABLED_CONFIG, "true");
        // Passthrough last, so it can override anything above.
        for (Path file : args.configFiles) {
            try (InputStream in = Files.newInputStream(file)) {
                props.load(in);
            }
        }
        props.putAll(args.overrides);
        return props;
    }

    static int runWith(Args args, Properties props) throws InterruptedException {
        Topology topology = switch (args.topology) {
            case "count-sum" -> CountSum.topology(props, args.inputTopic, args.outputTopic);
            case "tumbling-count", "hopping-sum" ->
                    WindowedTopologies.topology(props, args.topology, args.inputTopic, args.outputTopic);
            default -> topology(props, args.inputTopic, args.outputTopic);
        };
        KafkaStreams streams = new KafkaStreams(topology, props);

        CountDownLatch stop = new CountDownLatch(1);
        AtomicInteger exitCode = new AtomicInteger(EXIT_OK);
        AtomicBoolean ready = new AtomicBoolean(false);
        PrintStream stdout = System.out;

        streams.setStateListener((newState, oldState) -> {
            if (newState == KafkaStreams.State.RUNNING && ready.compareAndSet(false, true)) {
                synchronized (stdout) {
                    stdout.println("ready");
                    stdout.flush();
                }
            } else if (newState == KafkaStreams.State.ERROR) {
                exitCode.compareAndSet(EXIT_OK, EXIT_ERROR);
                stop.countDown();
            }
        });
        streams.setUncaughtExceptionHandler(e -> {
            LOG.error("Stream thread failed; shutting down", e);
            return StreamThreadExceptionResponse.SHUTDOWN_CLIENT;
        });
        installSignalHandlers(stop);
        // When each store partition's restore starts and ends, on stdout (the restore benchmark
        // reads them: weir-bench kafka stateful --restore).
        streams.setGlobalStateRestoreListener(new StateRestoreListener() {
            @Override
            public void onRestoreStart(TopicPartition partition, String store, long start, long end) {
                synchronized (stdout) {
                    stdout.println("restore-start " + System.currentTimeMillis() + " " + partition);
                    stdout.flush();
                }
            }

            @Override
            public void onBatchRestored(TopicPartition partition, String store, long end, long records) {}

            @Override
            public void onRestoreEnd(TopicPartition partition, String store, long total) {
                synchronized (stdout) {
                    stdout.println("restore-end " + System.currentTimeMillis() + " " + total + " " + partition);
                    stdout.flush();
                }
            }
        });

        streams.start();
        stop.await();

        // Leave the consumer group on close (not Kafka Streams' default), so that a following run
        // with the same application id does not wait for this member to time out.
        CloseOptions close = CloseOptions.timeout(args.closeTimeout)
                .withGroupMembershipOperation(CloseOptions.GroupMembershipOperation.LEAVE_GROUP);
        boolean closed = streams.close(close);
        long malformed = JsonSteps.malformedCount();
        if (malformed > 0) {
            System.err.println("kafka-streams-bench: skipped " + malformed + " malformed value(s)");
        }
        if (!closed) {
            System.err.println("kafka-streams-bench: Kafka Streams did not close within "
                    + args.closeTimeout.toMillis() + " ms");
            exitCode.compareAndSet(EXIT_OK, EXIT_CLOSE_TIMEOUT);
        }
        return exitCode.get();
    }

    /**
     * SIGTERM and SIGINT start a clean close (handled here rather than by JVM shutdown hooks, so
     * the process can exit 0 after it). A second signal while closing exits at once.
     */
    private static void installSignalHandlers(CountDownLatch stop) {
        AtomicInteger signals = new AtomicInteger();
        for (String name : List.of("TERM", "INT")) {
            Signal.handle(new Signal(name), signal -> {
                if (signals.incrementAndGet() > 1) {
                    System.err.println("kafka-streams-bench: second signal, exiting without a clean close");
                    Runtime.getRuntime().halt(128 + signal.getNumber());
                }
                stop.countDown();
            });
        }
    }

    private static void deleteTree(Path root) {
        try (Stream<Path> paths = Files.walk(root)) {
            for (Path p : paths.sorted(Comparator.reverseOrder()).toList()) {
                Files.deleteIfExists(p);
            }
        } catch (IOException e) {
            LOG.warn("Could not delete state directory {}: {}", root, e.toString());
        }
    }
}
