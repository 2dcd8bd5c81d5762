package dev.weir.bench.kstreams;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.DeserializationFeature;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.json.JsonMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.util.concurrent.atomic.LongAdder;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The per-record JSON work of the benchmark, the same as weir's two plugins:
 *
 * <ul>
 *   <li>json-filter {@code {field: amount, op: gte, value: 100}}: keep a record when the numeric
 *       field {@code amount} is at least 100; a missing or non-numeric {@code amount} drops it;
 *   <li>enricher {@code {set: {checked: true}}}: set {@code "checked": true}, appended after the
 *       other fields (or replaced in place if the object already has one), other fields kept in
 *       their order.
 * </ul>
 *
 * <p>A value that is not a single JSON object (malformed text, an array or scalar, trailing
 * garbage, a null/tombstone value) is logged at WARN, counted and skipped: the behaviour of Kafka
 * Streams' {@code LogAndContinueExceptionHandler} for a value that fails to deserialize.
 *
 * <p>All methods are thread-safe: {@link JsonMapper} is shared by every stream thread once
 * configured, which is what Jackson recommends.
 */
final class JsonSteps {
    private static final Logger LOG = LoggerFactory.getLogger(JsonSteps.class);

    /** Threshold of the filter: {@code amount >= 100}. */
    static final double MIN_AMOUNT = 100;

    static final String AMOUNT_FIELD = "amount";
    static final String CHECKED_FIELD = "checked";

    /**
     * Strict like weir's JSON scanner: a value must be exactly one JSON document, so trailing
     * bytes after the object are an error rather than silently ignored (Jackson's default).
     */
    private static final JsonMapper MAPPER =
            JsonMapper.builder().enable(DeserializationFeature.FAIL_ON_TRAILING_TOKENS).build();

    private static final LongAdder MALFORMED = new LongAdder();

    private JsonSteps() {}

    /**
     * Parses a record value into a JSON object, or returns {@code null} (logged and counted) when
     * the value is not one. Kafka Streams' {@code filter} after this step drops the nulls.
     */
    static ObjectNode parseObject(String key, byte[] value) {
        if (value == null) {
            return malformed(key, "null value (tombstone)");
        }
        JsonNode node;
        try {
            node = MAPPER.readTree(value);
        } catch (JsonProcessingException e) {
            return malformed(key, e.getOriginalMessage());
        } catch (IOException e) {
            return malformed(key, e.toString());
        }
        if (node instanceof ObjectNode object) {
            return object;
        }
        return malformed(key, "value is JSON " + node.getNodeType() + ", not an object");
    }

    /** The filter: a JSON number {@code amount} that is at least {@link #MIN_AMOUNT}. */
    static boolean amountAtLeastMin(ObjectNode object) {
        JsonNode amount = object.get(AMOUNT_FIELD);
        return amount != null && amount.isNumber() && amount.doubleValue() >= MIN_AMOUNT;
    }

    /** The enricher: sets {@code "checked": true} and serializes the object back to bytes. */
    static byte[] markChecked(ObjectNode object) {
        object.put(CHECKED_FIELD, true);
        try {
            return MAPPER.writeValueAsBytes(object);
        } catch (JsonProcessingException e) {
            // Cannot happen for a tree Jackson itself parsed; fail the task if it ever does.
            throw new UncheckedIOException(e);
        }
    }

    /** How many values {@link #parseObject} skipped since start. */
    static long malformedCount() {
        return MALFORMED.sum();
    }

    private static ObjectNode malformed(String key, String why) {
        MALFORMED.increment();
        LOG.warn("Skipping record with key {}: value is not a JSON object: {}", key, why);
        return null;
    }
}
