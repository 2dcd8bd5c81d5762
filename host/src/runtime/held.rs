//! What a task holds at a checkpoint of an exactly-once run, as bytes: the
//! records its input merge keeps back while it waits for another input to
//! take them in timestamp order (`merge.rs`). Their sources have read past
//! them, so they are part of the task's state: the checkpoint saves them
//! and a resumed task takes them back before anything new.
//!
//! A plain length-prefixed layout (little-endian), written and read only
//! here, versioned by its first byte:
//!
//! ```text
//! held    = version:u8 count:u32 batch*
//! batch   = input from records:u32 (record origin)* rejects:u32 (origin record reason:str kind:u8)*
//! kind    = 0 decode | 1 timestamp    (layout 3; layout 2 had no kind: decode)
//! from    = 0 | 1 partition:u32    (the upstream task of a repartition's records)
//! input   = kind:u8 (0 source, 1 repartition) index:u16
//! record  = key:opt value:opt timestamp:i64 json:u8 old_value:opt headers:u32 (name:str value:opt)*
//! origin  = source:u16 partition:u32 offset:u64
//! opt     = 0 | 1 len:u32 bytes          str = len:u32 utf-8
//! ```

use bytes::Bytes;

use crate::io::batch::{Batch, InputId, Reject};
use crate::operators::FailureKind;
use crate::record::{Header, Origin, Record};

const VERSION: u8 = 3;

/// Encodes `batches` (what a task's merge holds).
pub fn encode(batches: &[Batch]) -> Vec<u8> {
    let mut out = vec![VERSION];
    put_u32(&mut out, batches.len());
    for b in batches {
        let (kind, index) = match b.input {
            InputId::Source(i) => (0u8, i),
            InputId::Repartition(i) => (1u8, i),
        };
        out.push(kind);
        out.extend_from_slice(&index.to_le_bytes());
        match b.from {
            None => out.push(0),
            Some(p) => {
                out.push(1);
                out.extend_from_slice(&p.to_le_bytes());
            }
        }
        put_u32(&mut out, b.records.len());
        for (record, origin) in b.records.iter().zip(&b.origins) {
            put_record(&mut out, record);
            put_origin(&mut out, origin);
        }
        put_u32(&mut out, b.rejects.len());
        for reject in &b.rejects {
            put_origin(&mut out, &reject.origin);
            put_record(&mut out, &reject.record);
            put_str(&mut out, &reject.reason);
            out.push(match reject.kind {
                FailureKind::Timestamp => 1,
                _ => 0,
            });
        }
    }
    out
}

/// Decodes what [`encode`] wrote; an error says what is wrong with it.
pub fn decode(bytes: &[u8]) -> Result<Vec<Batch>, String> {
    let mut r = Reader { bytes, at: 0 };
    let version = r.u8()?;
    if version != VERSION && version != 2 {
        return Err(format!(
            "held records of layout {version} (this weir reads {VERSION})"
        ));
    }
    let count = r.u32()?;
    let mut batches = Vec::with_capacity(count.min(1024));
    for _ in 0..count {
        let input = match (r.u8()?, r.u16()?) {
            (0, i) => InputId::Source(i),
            (1, i) => InputId::Repartition(i),
            (kind, _) => return Err(format!("an input of kind {kind}")),
        };
        let from = match r.u8()? {
            0 => None,
            1 => Some(u32::from_le_bytes(r.array()?)),
            other => return Err(format!("an upstream marked {other}")),
        };
        let records = r.u32()?;
        let mut batch = Batch::new(input, records.min(1 << 16));
        batch.from = from;
        for _ in 0..records {
            batch.records.push(r.record()?);
            batch.origins.push(r.origin()?);
        }
        for _ in 0..r.u32()? {
            let origin = r.origin()?;
            let record = r.record()?;
            let reason = r.str()?;
            let kind = match version {
                2 => FailureKind::Decode,
                _ => match r.u8()? {
                    0 => FailureKind::Decode,
                    1 => FailureKind::Timestamp,
                    other => return Err(format!("a rejected record of kind {other}")),
                },
            };
            batch.rejects.push(Reject {
                origin,
                record,
                reason,
                kind,
            });
        }
        batches.push(batch);
    }
    if r.at != bytes.len() {
        return Err(format!("{} bytes after the last batch", bytes.len() - r.at));
    }
    Ok(batches)
}

fn put_u32(out: &mut Vec<u8>, n: usize) {
    let n = u32::try_from(n).expect("a held count or length fits in 32 bits");
    out.extend_from_slice(&n.to_le_bytes());
}

fn put_opt(out: &mut Vec<u8>, bytes: &Option<Bytes>) {
    match bytes {
        None => out.push(0),
        Some(b) => {
            out.push(1);
            put_u32(out, b.len());
            out.extend_from_slice(b);
        }
    }
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    put_u32(out, s.len());
    out.extend_from_slice(s.as_bytes());
}

fn put_record(out: &mut Vec<u8>, r: &Record) {
    put_opt(out, &r.key);
    put_opt(out, &r.value);
    out.extend_from_slice(&r.timestamp.to_le_bytes());
    out.push(u8::from(r.value_is_json));
    put_opt(out, &r.old_value);
    put_u32(out, r.headers.len());
    for h in &r.headers {
        put_str(out, &h.name);
        put_opt(out, &h.value);
    }
}

fn put_origin(out: &mut Vec<u8>, o: &Origin) {
    out.extend_from_slice(&o.source.to_le_bytes());
    out.extend_from_slice(&o.partition.to_le_bytes());
    out.extend_from_slice(&o.offset.to_le_bytes());
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], String> {
        let end = self
            .at
            .checked_add(n)
            .filter(|&end| end <= self.bytes.len())
            .ok_or_else(|| format!("cut short at byte {}", self.at))?;
        let taken = &self.bytes[self.at..end];
        self.at = end;
        Ok(taken)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], String> {
        Ok(self.take(N)?.try_into().expect("took N bytes"))
    }

    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.array::<1>()?[0])
    }

    fn u16(&mut self) -> Result<u16, String> {
        Ok(u16::from_le_bytes(self.array()?))
    }

    fn u32(&mut self) -> Result<usize, String> {
        Ok(u32::from_le_bytes(self.array()?) as usize)
    }

    fn opt(&mut self) -> Result<Option<Bytes>, String> {
        match self.u8()? {
            0 => Ok(None),
            1 => {
                let len = self.u32()?;
                Ok(Some(Bytes::copy_from_slice(self.take(len)?)))
            }
            other => Err(format!("an optional field marked {other}")),
        }
    }

    fn str(&mut self) -> Result<String, String> {
        let len = self.u32()?;
        String::from_utf8(self.take(len)?.to_vec()).map_err(|e| e.to_string())
    }

    fn record(&mut self) -> Result<Record, String> {
        let key = self.opt()?;
        let value = self.opt()?;
        let timestamp = i64::from_le_bytes(self.array()?);
        let value_is_json = self.u8()? == 1;
        let old_value = self.opt()?;
        let mut headers = Vec::new();
        for _ in 0..self.u32()? {
            let name = self.str()?;
            let value = self.opt()?;
            headers.push(Header { name, value });
        }
        Ok(Record {
            key,
            value,
            timestamp,
            headers,
            value_is_json,
            old_value,
        })
    }

    fn origin(&mut self) -> Result<Origin, String> {
        Ok(Origin {
            source: self.u16()?,
            partition: u32::from_le_bytes(self.array()?),
            offset: u64::from_le_bytes(self.array()?),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn held_batches_round_trip_with_every_field() {
        let mut a = Batch::new(InputId::Source(1), 2);
        a.records.push(Record {
            key: Some(Bytes::from_static(b"k")),
            value: Some(Bytes::from_static(b"{\"n\":1}")),
            timestamp: -5,
            headers: vec![
                Header {
                    name: "h".into(),
                    value: None,
                },
                Header {
                    name: "i".into(),
                    value: Some(Bytes::from_static(b"v")),
                },
            ],
            value_is_json: true,
            old_value: Some(Bytes::from_static(b"old")),
        });
        a.origins.push(Origin {
            source: 1,
            partition: 3,
            offset: 77,
        });
        a.rejects.push(Reject {
            origin: Origin {
                source: 1,
                partition: 0,
                offset: 78,
            },
            record: Record {
                value: Some(Bytes::from_static(b"not json")),
                ..Record::default()
            },
            reason: "not JSON".into(),
            kind: FailureKind::Decode,
        });
        a.rejects.push(Reject {
            origin: Origin {
                source: 1,
                partition: 0,
                offset: 79,
            },
            record: Record::default(),
            reason: "no order time".into(),
            kind: FailureKind::Timestamp,
        });
        let mut b = Batch::new(InputId::Repartition(4), 0);
        b.from = Some(2);
        let bytes = encode(&[a, b]);
        let back = decode(&bytes).unwrap();
        assert_eq!(back.len(), 2);
        assert_eq!(back[0].input, InputId::Source(1));
        assert_eq!(back[0].records[0].headers.len(), 2);
        assert!(back[0].records[0].value_is_json);
        assert_eq!(back[0].records[0].old_value.as_deref(), Some(&b"old"[..]));
        assert_eq!(back[0].origins[0].offset, 77);
        assert_eq!(back[0].rejects[0].reason, "not JSON");
        assert_eq!(back[0].rejects[1].kind, FailureKind::Timestamp);
        assert_eq!(back[1].input, InputId::Repartition(4));
        assert_eq!((back[0].from, back[1].from), (None, Some(2)));
        assert_eq!(encode(&back), bytes, "decoding loses nothing");
        assert!(
            decode(&bytes[..bytes.len() - 1])
                .unwrap_err()
                .contains("cut short")
        );
    }
}
