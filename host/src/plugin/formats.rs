//! The versions of an aggregator's accumulator format (WIT
//! `accumulator-versions`): what a component reads and writes, and what
//! it converts, asked once at load. The host stores each accumulator with
//! the version that wrote it and decides from these whether a swap can
//! keep a step's state, and whether it can be rolled back.

/// An aggregator's accumulator versions. An aggregator that does not
/// export `accumulator-versions` writes version 1 and converts nothing.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AccumulatorFormats {
    /// The version its `add`, `subtract` and `merge` read and write.
    pub current: u32,
    /// Older versions its `upgrade` converts to `current`.
    pub upgrades_from: Vec<u32>,
    /// Older versions its `downgrade` converts `current` to.
    pub downgrades_to: Vec<u32>,
}

impl Default for AccumulatorFormats {
    fn default() -> Self {
        AccumulatorFormats {
            current: 1,
            upgrades_from: Vec::new(),
            downgrades_to: Vec::new(),
        }
    }
}

impl AccumulatorFormats {
    /// Checks what a component declared: a current version of 1 or more,
    /// conversions only from and to older versions. Duplicates are dropped.
    pub fn checked(
        current: u32,
        mut upgrades_from: Vec<u32>,
        mut downgrades_to: Vec<u32>,
    ) -> Result<Self, String> {
        if current == 0 {
            return Err("`versions` gave current version 0; versions start at 1".into());
        }
        for (list, name) in [
            (&mut upgrades_from, "upgrades-from"),
            (&mut downgrades_to, "downgrades-to"),
        ] {
            list.sort_unstable();
            list.dedup();
            if let Some(v) = list.iter().find(|&&v| v == 0 || v >= current) {
                return Err(format!(
                    "`versions` lists version {v} in `{name}`, which must hold older versions than the current {current} (1 or more)"
                ));
            }
        }
        Ok(AccumulatorFormats {
            current,
            upgrades_from,
            downgrades_to,
        })
    }

    /// Whether it can use an accumulator of `version`: as it is, or
    /// through `upgrade`.
    pub fn reads(&self, version: u32) -> bool {
        version == self.current || self.upgrades_from.contains(&version)
    }

    /// Whether its `downgrade` converts its accumulators to `version`.
    pub fn downgrades_to(&self, version: u32) -> bool {
        self.downgrades_to.contains(&version)
    }

    /// What it reads, for messages: `2 (upgrading 1)`.
    pub fn describe_reads(&self) -> String {
        match self.upgrades_from.as_slice() {
            [] => format!("{}", self.current),
            from => format!(
                "{} (upgrading {})",
                self.current,
                from.iter()
                    .map(u32::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn declared_versions_are_checked_and_read() {
        let f = AccumulatorFormats::checked(3, vec![2, 1, 2], vec![2]).unwrap();
        assert_eq!(f.upgrades_from, vec![1, 2]);
        assert!(f.reads(1) && f.reads(3) && !f.reads(4));
        assert!(f.downgrades_to(2) && !f.downgrades_to(1));
        assert_eq!(f.describe_reads(), "3 (upgrading 1, 2)");
        assert!(AccumulatorFormats::checked(0, vec![], vec![]).is_err());
        let e = AccumulatorFormats::checked(2, vec![2], vec![]).unwrap_err();
        assert!(e.contains("version 2 in `upgrades-from`"), "{e}");
        assert!(AccumulatorFormats::checked(2, vec![], vec![3]).is_err());
        assert_eq!(AccumulatorFormats::default().describe_reads(), "1");
    }
}
