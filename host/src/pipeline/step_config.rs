//! A step's config in a file of its own (`weir swap --config FILE`): the
//! same value a step's `config:` holds in the pipeline file, so a config
//! moves between the two unchanged.

use std::path::Path;

use super::PipelineError;
use super::diagnostic::{Diagnostic, Loc};
use super::validate::yaml_message;

/// The config in `path`: JSON when the file name ends in `.json`, YAML
/// otherwise (read with the pipeline file's rules, YAML 1.2 booleans
/// only). An unreadable file or a syntax error names the file, and the
/// line and column where there is one.
pub fn read_step_config(path: &Path) -> Result<serde_json::Value, PipelineError> {
    let problem = |loc: Option<Loc>, message: String| {
        PipelineError::single(Diagnostic::new(path, loc, message))
    };
    let text = std::fs::read_to_string(path)
        .map_err(|e| problem(None, format!("cannot read the config file: {e}")))?;
    let json = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("json"));
    if json {
        serde_json::from_str(&text).map_err(|e| {
            let loc = Loc {
                line: e.line() as u64,
                column: e.column() as u64,
            };
            // serde_json ends its message with the position, given above.
            let message = e.to_string();
            let message = match message.rfind(" at line ") {
                Some(i) => message[..i].to_string(),
                None => message,
            };
            problem(Some(loc), format!("not JSON: {message}"))
        })
    } else {
        let options = serde_saphyr::options! { strict_booleans: true };
        serde_saphyr::from_str_with_options(&text, options).map_err(|e| {
            let loc = e.location().map(|l| Loc::of(&l));
            problem(loc, format!("not YAML: {}", yaml_message(&e)))
        })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn read(name: &str, text: &str) -> Result<serde_json::Value, String> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        read_step_config(&path).map_err(|e| {
            e.to_string()
                .replace(&dir.path().display().to_string(), "DIR")
        })
    }

    #[test]
    fn json_and_yaml_give_the_value_a_step_config_holds() {
        let expected = json!({ "set": { "version": "v2", "on": true, "n": 3 } });
        assert_eq!(
            read(
                "c.json",
                r#"{"set": {"version": "v2", "on": true, "n": 3}}"#
            ),
            Ok(expected.clone())
        );
        assert_eq!(
            read("c.yaml", "set:\n  version: v2\n  on: true\n  n: 3\n"),
            Ok(expected)
        );
        // YAML 1.2 booleans only, as in the pipeline file.
        assert_eq!(read("c.yml", "flag: yes\n"), Ok(json!({ "flag": "yes" })));
    }

    #[test]
    fn a_syntax_error_names_the_file_line_and_column() {
        assert_eq!(
            read("c.json", "{\n  \"set\": {\"version\": v2}\n}\n"),
            Err("DIR/c.json:2:22: not JSON: expected value".to_string())
        );
        let e = read("c.yaml", "set:\n  version: [v2\n").unwrap_err();
        assert!(e.starts_with("DIR/c.yaml:2:"), "{e}");
        assert!(e.contains("not YAML: "), "{e}");
        let e = read_step_config(Path::new("/nonexistent/c.yaml"))
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("/nonexistent/c.yaml: cannot read the config file: "),
            "{e}"
        );
    }
}
