//! Placeholders: `{name}` (also written `{{name}}` or `{{ name }}`, the Capillary tag style).
//!
//! A placeholder name starts with a letter or `_` and goes on with letters, digits, `_` or `.`
//! (at most 64). Braces that do not form a placeholder (`{"json": 1}`, `{ }`) are plain text.
//! Rendering never leaves a placeholder visible: a placeholder without a value refuses the
//! whole render and names what is missing.

/// Longest placeholder name.
const NAME_MAX: usize = 64;

/// True for a valid placeholder name.
pub fn is_placeholder_name(name: &str) -> bool {
    let mut chars = name.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    first_ok
        && name.len() <= NAME_MAX
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
}

/// A piece of a template.
#[derive(Debug, PartialEq, Eq)]
enum Piece<'a> {
    Text(&'a str),
    Placeholder(&'a str),
}

/// Reads `{ name }` at the start of `rest` (after the opening braces were consumed), closed by
/// `close`; returns the name and the bytes consumed.
fn read_name<'a>(rest: &'a str, close: &str) -> Option<(&'a str, usize)> {
    let trimmed = rest.trim_start_matches(' ');
    let lead = rest.len() - trimmed.len();
    let end = trimmed
        .char_indices()
        .find(|(_, c)| !(c.is_ascii_alphanumeric() || *c == '_' || *c == '.'))
        .map_or(trimmed.len(), |(i, _)| i);
    let name = &trimmed[..end];
    if !is_placeholder_name(name) {
        return None;
    }
    let after = &trimmed[end..];
    let after_trimmed = after.trim_start_matches(' ');
    let spaces = after.len() - after_trimmed.len();
    after_trimmed.starts_with(close).then_some((name, lead + end + spaces + close.len()))
}

fn scan(template: &str) -> Vec<Piece<'_>> {
    let mut pieces = Vec::new();
    let mut text_start = 0;
    let mut i = 0;
    let bytes = template.as_bytes();
    while i < bytes.len() {
        if bytes[i] != b'{' {
            i += 1;
            continue;
        }
        let double = if template[i..].starts_with("{{") {
            read_name(&template[i + 2..], "}}").map(|(n, used)| (n, used + 2))
        } else {
            None
        };
        let found = double.or_else(|| read_name(&template[i + 1..], "}").map(|(n, u)| (n, u + 1)));
        match found {
            Some((name, used)) => {
                if text_start < i {
                    pieces.push(Piece::Text(&template[text_start..i]));
                }
                pieces.push(Piece::Placeholder(name));
                i += used;
                text_start = i;
            }
            None => i += 1,
        }
    }
    if text_start < template.len() {
        pieces.push(Piece::Text(&template[text_start..]));
    }
    pieces
}

/// The distinct placeholder names of a template, in order of first use.
pub fn placeholders(template: &str) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for piece in scan(template) {
        if let Piece::Placeholder(name) = piece
            && !names.iter().any(|n| n == name)
        {
            names.push(name.to_string());
        }
    }
    names
}

/// Renders a template, inserting `escape(value)` for each placeholder; `Err` lists the
/// placeholders `lookup` has no value for.
pub fn render_escaped(
    template: &str,
    lookup: impl Fn(&str) -> Option<String>,
    escape: impl Fn(&str) -> String,
) -> Result<String, Vec<String>> {
    let mut out = String::with_capacity(template.len());
    let mut missing: Vec<String> = Vec::new();
    for piece in scan(template) {
        match piece {
            Piece::Text(text) => out.push_str(text),
            Piece::Placeholder(name) => match lookup(name) {
                Some(value) => out.push_str(&escape(&value)),
                None => {
                    if !missing.iter().any(|m| m == name) {
                        missing.push(name.to_string());
                    }
                }
            },
        }
    }
    if missing.is_empty() { Ok(out) } else { Err(missing) }
}

/// Renders a template with values as they are.
pub fn render(
    template: &str,
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<String, Vec<String>> {
    render_escaped(template, lookup, str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(name: &str) -> Option<String> {
        match name {
            "name" => Some("Ana".into()),
            "points" => Some("120".into()),
            "first.name" => Some("A".into()),
            _ => None,
        }
    }

    #[test]
    fn both_brace_styles_render() {
        assert_eq!(render("Hi {name}, {points} pts", values).unwrap(), "Hi Ana, 120 pts");
        assert_eq!(render("Hi {{name}} / {{ points }}", values).unwrap(), "Hi Ana / 120");
        assert_eq!(render("{ name }{first.name}", values).unwrap(), "AnaA");
    }

    #[test]
    fn other_braces_are_text() {
        let json = r#"{"to": "{name}", "n": {"x": 1}} { } {1a} {"#;
        assert_eq!(render(json, values).unwrap(), r#"{"to": "Ana", "n": {"x": 1}} { } {1a} {"#);
        assert_eq!(placeholders(json), ["name"]);
    }

    #[test]
    fn missing_values_refuse_and_are_named_once() {
        assert_eq!(render("{code} {name} {code} {{tier}}", values).unwrap_err(), ["code", "tier"]);
    }

    #[test]
    fn escaping_applies_to_values_only() {
        let out = render_escaped(
            "{\"t\": \"{name}\"}",
            |_| Some("a\"b".into()),
            |v| v.replace('"', "\\\""),
        );
        assert_eq!(out.unwrap(), "{\"t\": \"a\\\"b\"}");
    }

    #[test]
    fn placeholder_names_are_bounded() {
        assert!(is_placeholder_name("first_name"));
        assert!(!is_placeholder_name("9lives"));
        assert!(!is_placeholder_name(&"a".repeat(65)));
        assert!(!is_placeholder_name(""));
    }
}
