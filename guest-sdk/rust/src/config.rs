use serde::de::DeserializeOwned;

/// A step's `config` block from the pipeline file, as the host passed it (JSON).
#[derive(Debug, Clone)]
pub struct Config {
    json: String,
}

impl Config {
    /// Wraps the JSON text the host sent to `init`.
    pub fn from_json(json: impl Into<String>) -> Self {
        Config { json: json.into() }
    }

    /// The raw JSON text (`null` when the step has no config).
    pub fn as_json(&self) -> &str {
        &self.json
    }

    /// Whether the step has no config block.
    pub fn is_null(&self) -> bool {
        self.json.trim() == "null"
    }

    /// Deserializes the config; the error names what was wrong so the host
    /// can show it against the step.
    pub fn parse<T: DeserializeOwned>(&self) -> Result<T, String> {
        serde_json::from_str(&self.json).map_err(|e| format!("invalid config: {e}"))
    }
}
