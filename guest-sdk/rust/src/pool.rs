//! Byte buffers handed back after a record's output is written, so building
//! a new value (a patched JSON object, say) costs no allocation per record.
//! Inside Wasm an allocation and its free cost about as much as the JSON
//! work of a small enrichment.

use std::cell::RefCell;

/// Buffers kept for reuse; a map emits one value per record, a flat-map a
/// few, so a handful is enough.
const KEPT: usize = 16;
/// Larger buffers are freed rather than kept, so one huge record does not
/// pin its memory for the life of the instance.
const LARGEST_KEPT: usize = 1 << 20;

thread_local! {
    static FREE: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
}

/// An empty buffer with room for at least `capacity` bytes.
pub(crate) fn take(capacity: usize) -> Vec<u8> {
    match FREE.with(|free| free.borrow_mut().pop()) {
        Some(mut buffer) => {
            buffer.clear();
            buffer.reserve(capacity);
            buffer
        }
        None => Vec::with_capacity(capacity),
    }
}

/// Returns a buffer for a later [`take`].
pub(crate) fn give(buffer: Vec<u8>) {
    if buffer.capacity() == 0 || buffer.capacity() > LARGEST_KEPT {
        return;
    }
    FREE.with(|free| {
        let mut free = free.borrow_mut();
        if free.len() < KEPT {
            free.push(buffer);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_come_back_empty_and_big_ones_are_not_kept() {
        let mut b = take(10);
        b.extend_from_slice(b"hello");
        let ptr = b.as_ptr();
        give(b);
        let again = take(4);
        assert!(again.is_empty());
        assert_eq!(again.as_ptr(), ptr);
        give(Vec::with_capacity(LARGEST_KEPT + 1));
        assert!(take(1).capacity() <= LARGEST_KEPT);
    }
}
