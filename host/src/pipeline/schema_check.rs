//! The first pass over a pipeline file: every field name, kind and type
//! checked against the shape of the raw structs ([`super::schema`]), all
//! problems at once, each where it is written with a hint (the nearest
//! valid name, what the field expects, an indentation that looks wrong).
//! Only a file that passes is deserialized into the typed structs.

use super::Loc;
use super::schema::{Field, Shape};
use super::yaml_tree::{Node, Yaml};

/// A problem and where it is.
pub type Problem = (Loc, String);

/// Every problem of shape in `root`, in no particular order.
pub fn check(root: &Node, shape: &Shape) -> Vec<Problem> {
    let mut w = Walk {
        problems: Vec::new(),
    };
    w.value(root, shape, &Place::Top);
    w.problems
}

/// Whose field a node is, for messages.
enum Place<'a> {
    /// The file itself.
    Top,
    /// A field of a struct: `owner` is how its owner is called (`None` for
    /// the top level).
    Field {
        owner: Option<&'a str>,
        name: &'a str,
    },
    /// An entry of a mapping of names (`source `a``) or of a list (`step `s``).
    Entry(String),
}

impl Place<'_> {
    /// How the node itself is called: "`sources`", "step `s`, `limits`",
    /// "source `a`".
    fn label(&self) -> String {
        match self {
            Place::Top => "the pipeline file".into(),
            Place::Field { owner: None, name } => format!("`{name}`"),
            Place::Field {
                owner: Some(o),
                name,
            } => format!("{o}: `{name}`"),
            Place::Entry(e) => e.clone(),
        }
    }

    /// How a struct at this place is called when its own fields are in
    /// question (`None` at the top level).
    fn owner(&self) -> Option<String> {
        match self {
            Place::Top => None,
            Place::Field { owner: None, name } => Some(format!("`{name}`")),
            Place::Field {
                owner: Some(o),
                name,
            } => Some(format!("{o}, `{name}`")),
            Place::Entry(e) => Some(e.clone()),
        }
    }
}

struct Walk {
    problems: Vec<Problem>,
}

impl Walk {
    fn problem(&mut self, loc: Loc, message: String) {
        self.problems.push((loc, message));
    }

    fn value(&mut self, node: &Node, shape: &Shape, place: &Place) {
        match (shape, &node.value) {
            (Shape::Optional(_), Yaml::Null) => {}
            (Shape::Optional(inner), _) => self.value(node, inner, place),
            (Shape::Struct { fields, .. }, Yaml::Map(entries)) => {
                self.fields(node, entries, fields, place)
            }
            (Shape::Map(item), Yaml::Map(entries)) => self.named_entries(entries, item),
            (Shape::List(item), Yaml::List(items)) => self.list_items(items, item),
            (Shape::Choice(words), Yaml::Text(t)) if !words.contains(&t.as_str()) => {
                let hint = match nearest(t, words.iter().copied()) {
                    Some(best) => format!("; did you mean `{best}`?"),
                    None => String::new(),
                };
                self.problem(
                    node.loc,
                    format!(
                        "{} is `{t}`, not one of {}{hint}",
                        place.label(),
                        words.join(" | ")
                    ),
                );
            }
            (Shape::Choice(_), Yaml::Text(_)) => {}
            (Shape::Integer { signed: false }, Yaml::Int(n)) if *n < 0 => self.problem(
                node.loc,
                format!("{} must be {}, not {n}", place.label(), shape.describe()),
            ),
            (Shape::Integer { .. }, Yaml::Int(_))
            | (Shape::Number, Yaml::Int(_) | Yaml::Float(_))
            | (Shape::Bool, Yaml::Bool(_))
            | (Shape::Text, Yaml::Text(_) | Yaml::Int(_) | Yaml::Float(_) | Yaml::Bool(_))
            | (Shape::Any(_) | Shape::Unknown, _) => {}
            _ => {
                let message = wrong_type(&place.label(), shape, &node.value);
                self.problem(node.loc, message);
            }
        }
    }

    /// A struct: unknown fields (with the nearest known name, or a hint
    /// that the field belongs to an empty one above it), missing required
    /// fields, and each known field's value.
    fn fields(&mut self, node: &Node, entries: &[(Node, Node)], fields: &[Field], place: &Place) {
        let owner = place.owner();
        let names = || fields.iter().map(|f| f.name);
        for (i, (key, value)) in entries.iter().enumerate() {
            let Some(name) = key.scalar_text() else {
                self.problem(
                    key.loc,
                    format!("{}: a field name must be text", place.label()),
                );
                continue;
            };
            match fields.iter().find(|f| f.name == name) {
                Some(f) => self.value(
                    value,
                    &f.shape,
                    &Place::Field {
                        owner: owner.as_deref(),
                        name: f.name,
                    },
                ),
                None => {
                    let hint = match (nearest(&name, names()), empty_before(entries, i)) {
                        (_, Some(above)) => format!(
                            "; `{above}` above is empty: if `{name}` belongs to it, indent it under `{above}`"
                        ),
                        (Some(best), None) => format!("; did you mean `{best}`?"),
                        (None, None) => {
                            format!(
                                "; the fields are {}",
                                names().collect::<Vec<_>>().join(", ")
                            )
                        }
                    };
                    let whose = match &owner {
                        Some(o) => format!("{o} has no field `{name}`"),
                        None => format!("unknown top-level field `{name}`"),
                    };
                    self.problem(key.loc, format!("{whose}{hint}"));
                }
            }
        }
        for f in fields.iter().filter(|f| f.required) {
            let given = entries
                .iter()
                .any(|(k, _)| k.scalar_text().as_deref() == Some(f.name));
            if !given {
                let who = owner.clone().unwrap_or_else(|| "the pipeline".into());
                self.problem(
                    node.loc,
                    format!("{who} needs `{}` ({})", f.name, f.shape.describe()),
                );
            }
        }
    }

    /// A mapping of names the file chooses (`sources`, `sinks`, `plugins`,
    /// properties): each value checked, named in messages by its key.
    fn named_entries(&mut self, entries: &[(Node, Node)], item: &Shape) {
        let noun = item.noun();
        for (i, (key, value)) in entries.iter().enumerate() {
            let name = key.scalar_text().unwrap_or_default();
            let place = Place::Entry(format!("{noun} `{name}`"));
            let is_struct = matches!(item.inner(), Shape::Struct { .. });
            if is_struct && !matches!(value.value, Yaml::Map(_)) {
                self.misplaced_entry(entries, i, item, &place);
                continue;
            }
            self.value(value, item, &place);
        }
    }

    /// An entry of a mapping of structs that is not a mapping: usually a
    /// line indented too little, so say which.
    fn misplaced_entry(&mut self, entries: &[(Node, Node)], i: usize, item: &Shape, place: &Place) {
        let (key, value) = &entries[i];
        let name = key.scalar_text().unwrap_or_default();
        let noun = item.noun();
        let is_field = |n: &str| item.fields().iter().any(|f| f.name == n);
        let hint = if is_field(&name) {
            match empty_before(entries, i) {
                Some(above) => {
                    format!("; `{name}` is a field of a {noun}: indent it under `{above}`")
                }
                None => format!("; `{name}` is a field of a {noun}: indent it under its {noun}"),
            }
        } else if matches!(value.value, Yaml::Null)
            && let Some((next, _)) = entries.get(i + 1)
            && let Some(next_name) = next.scalar_text()
            && is_field(&next_name)
        {
            format!("; if `{next_name}` below belongs to it, indent it under `{name}`")
        } else {
            String::new()
        };
        let message = wrong_type(&place.label(), item.inner(), &value.value);
        self.problem(value.loc, format!("{message}{hint}"));
    }

    /// A list: each item checked, named by its `name` if it has one.
    fn list_items(&mut self, items: &[Node], item: &Shape) {
        let noun = item.noun();
        for (i, node) in items.iter().enumerate() {
            let place = match node.get("name").and_then(Node::scalar_text) {
                Some(name) => Place::Entry(format!("{noun} `{name}`")),
                None => Place::Entry(format!("{noun} {}", i + 1)),
            };
            self.value(node, item, &place);
        }
    }
}

/// The key before entry `i` when its value is empty: a following line
/// indented too little reads as a sibling of it.
fn empty_before(entries: &[(Node, Node)], i: usize) -> Option<String> {
    let (key, value) = entries.get(i.checked_sub(1)?)?;
    matches!(value.value, Yaml::Null)
        .then(|| key.scalar_text())
        .flatten()
}

/// "`x` must be a whole number, not text `two`"; "`x` is empty: it must
/// be ..." (a mapping or list is written `{}` or `[]` when it has nothing).
fn wrong_type(label: &str, shape: &Shape, got: &Yaml) -> String {
    match got {
        Yaml::Null => format!("{label} is empty: it must be {}", shape.describe()),
        other => format!(
            "{label} must be {}, not {}",
            shape.describe(),
            describe_node(other)
        ),
    }
}

fn describe_node(y: &Yaml) -> String {
    match y {
        Yaml::Null => "empty".into(),
        Yaml::Bool(b) => format!("`{b}`"),
        Yaml::Int(n) => format!("the number {n}"),
        Yaml::Float(f) => format!("the number {f}"),
        Yaml::Text(t) => format!("text `{t}`"),
        Yaml::List(_) => "a list".into(),
        Yaml::Map(_) => "a mapping".into(),
    }
}

/// The valid name closest to `wrong`, if any is close (Jaro-Winkler, which
/// favours a shared start: `flie` → `file`, `file path` → `file`).
pub fn nearest<'a>(wrong: &str, valid: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    let wrong = wrong.to_lowercase();
    valid
        .map(|v| (strsim::jaro_winkler(&wrong, v), v))
        .filter(|(score, _)| *score >= 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, v)| v)
}
