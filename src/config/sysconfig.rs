//! The `/etc/sysconfig/docker-registry` file: shell-style `KEY=VALUE` lines.
//!
//! The same file is read by systemd (`EnvironmentFile=`) and often sourced by shell scripts, so
//! we accept what both understand: comments, blank lines, `export KEY=...`, single quotes
//! (literal), double quotes (with `\"`, `\\`, `\$`, `` \` `` escapes), backslash escapes and
//! line continuations, quoted values spanning lines, and a `# comment` after a value.
//! Variables (`$HOME`) are not expanded, as systemd does not expand them either; a value that
//! contains `$` gets a remark so the operator is not surprised. rust-ini was considered and
//! dropped: it knows neither shell quoting nor `export`, and gives no line numbers.

/// One `KEY=VALUE` assignment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assignment {
    pub name: String,
    pub value: String,
    /// 1-based line where the assignment starts.
    pub line: usize,
}

/// A problem on one line; `key` is empty when the line has no readable key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineProblem {
    pub line: usize,
    pub key: String,
    pub message: String,
}

/// The file read: assignments in order, errors, and remarks (not errors).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Parsed {
    pub assignments: Vec<Assignment>,
    pub errors: Vec<LineProblem>,
    pub remarks: Vec<LineProblem>,
}

impl Parsed {
    /// The last assignment of `name` (a later line wins, as in the shell).
    pub fn get(&self, name: &str) -> Option<&Assignment> {
        self.assignments.iter().rev().find(|a| a.name == name)
    }
}

struct Cursor<'a> {
    chars: std::iter::Peekable<std::str::Chars<'a>>,
    line: usize,
}

impl Cursor<'_> {
    fn next(&mut self) -> Option<char> {
        let c = self.chars.next();
        if c == Some('\n') {
            self.line += 1;
        }
        c
    }

    fn peek(&mut self) -> Option<char> {
        self.chars.peek().copied()
    }

    fn skip_to_end_of_line(&mut self) {
        while let Some(c) = self.next() {
            if c == '\n' {
                break;
            }
        }
    }

    fn skip_blanks(&mut self) {
        while matches!(self.peek(), Some(' ' | '\t' | '\r')) {
            self.next();
        }
    }
}

fn is_name_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_'
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// Parses the whole file, reporting every bad line.
pub fn parse(text: &str) -> Parsed {
    let mut out = Parsed::default();
    let mut cur = Cursor {
        chars: text.chars().peekable(),
        line: 1,
    };
    loop {
        cur.skip_blanks();
        let Some(c) = cur.peek() else { break };
        let line = cur.line;
        if c == '\n' {
            cur.next();
            continue;
        }
        if c == '#' {
            cur.skip_to_end_of_line();
            continue;
        }
        let mut name = read_word(&mut cur);
        if name == "export" && matches!(cur.peek(), Some(' ' | '\t')) {
            cur.skip_blanks();
            name = read_word(&mut cur);
        }
        if name.is_empty() || !name.starts_with(is_name_start) {
            out.errors.push(LineProblem {
                line,
                key: String::new(),
                message: "expected KEY=VALUE (a variable name, `=`, a value)".into(),
            });
            cur.skip_to_end_of_line();
            continue;
        }
        // systemd accepts blanks around `=`; a shell does not, but failing the service over
        // it would help no one.
        cur.skip_blanks();
        if cur.peek() != Some('=') {
            out.errors.push(LineProblem {
                line,
                key: name.clone(),
                message: format!("expected `=` after {name} (write {name}=VALUE)"),
            });
            cur.skip_to_end_of_line();
            continue;
        }
        cur.next();
        cur.skip_blanks();
        match read_value(&mut cur) {
            Ok((value, has_dollar)) => {
                if has_dollar {
                    out.remarks.push(LineProblem {
                        line,
                        key: name.clone(),
                        message: "contains `$`: variables are not expanded here (as in systemd's EnvironmentFile)"
                            .into(),
                    });
                }
                out.assignments.push(Assignment { name, value, line });
            }
            Err(message) => {
                out.errors.push(LineProblem {
                    line,
                    key: name,
                    message,
                });
                cur.skip_to_end_of_line();
            }
        }
    }
    out
}

fn read_word(cur: &mut Cursor<'_>) -> String {
    let mut w = String::new();
    while let Some(c) = cur.peek() {
        if is_name_char(c) {
            w.push(c);
            cur.next();
        } else {
            break;
        }
    }
    w
}

/// Reads a quoted part of a value, from its opening quote to its closing one, onto `value`:
/// single quotes keep every character as it is; double quotes take the backslash escapes of
/// `"`, `\\`, `$`, `` ` `` and the newline, and may expand `$` (returned: whether one was seen).
fn read_quoted(cur: &mut Cursor<'_>, quote: char, value: &mut String) -> Result<bool, String> {
    let start = cur.line;
    let unclosed = || {
        let which = if quote == '"' { "double" } else { "single" };
        format!("{which} quote opened on line {start} is never closed")
    };
    let mut dollar = false;
    cur.next();
    loop {
        match cur.next().ok_or_else(unclosed)? {
            c if c == quote => return Ok(dollar),
            '\\' if quote == '"' => match cur.next().ok_or_else(unclosed)? {
                '\n' => {}
                c @ ('"' | '\\' | '$' | '`') => value.push(c),
                c => {
                    value.push('\\');
                    value.push(c);
                }
            },
            c => {
                dollar |= quote == '"' && c == '$';
                value.push(c);
            }
        }
    }
}

/// Reads a value up to the end of its (last) line. Returns the value and whether it contains
/// an unescaped `$` outside single quotes.
fn read_value(cur: &mut Cursor<'_>) -> Result<(String, bool), String> {
    let mut value = String::new();
    let mut dollar = false;
    loop {
        match cur.peek() {
            None => return Ok((value, dollar)),
            Some('\n') => {
                cur.next();
                return Ok((value, dollar));
            }
            Some(' ' | '\t' | '\r') => {
                cur.skip_blanks();
                return match cur.peek() {
                    None => Ok((value, dollar)),
                    Some('\n') => {
                        cur.next();
                        Ok((value, dollar))
                    }
                    Some('#') => {
                        cur.skip_to_end_of_line();
                        Ok((value, dollar))
                    }
                    Some(_) => {
                        Err("unquoted blank in the value: quote it (KEY=\"two words\")".into())
                    }
                };
            }
            Some(quote @ ('\'' | '"')) => dollar |= read_quoted(cur, quote, &mut value)?,
            Some('\\') => {
                cur.next();
                match cur.next() {
                    // A line continuation.
                    Some('\n') | None => {}
                    Some(c) => value.push(c),
                }
            }
            Some(c) => {
                if matches!(c, '`' | ';' | '|' | '&' | '<' | '>' | '(' | ')') {
                    return Err(format!("unquoted `{c}` in the value: quote the value"));
                }
                dollar |= c == '$';
                value.push(c);
                cur.next();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(text: &str) -> Vec<(String, String, usize)> {
        let p = parse(text);
        assert!(p.errors.is_empty(), "{:?}", p.errors);
        p.assignments
            .into_iter()
            .map(|a| (a.name, a.value, a.line))
            .collect()
    }

    fn a(name: &str, value: &str, line: usize) -> (String, String, usize) {
        (name.into(), value.into(), line)
    }

    #[test]
    fn reads_the_legacy_file() {
        let text = "# The Docker registry configuration file\n# DOCKER_REGISTRY_CONFIG=/etc/docker-registry.yml\n\n\
                    SETTINGS_FLAVOR=local\n\nREGISTRY_ADDRESS=0.0.0.0\nREGISTRY_PORT=5000\nGUNICORN_WORKERS=8\n";
        assert_eq!(
            values(text),
            [
                a("SETTINGS_FLAVOR", "local", 4),
                a("REGISTRY_ADDRESS", "0.0.0.0", 6),
                a("REGISTRY_PORT", "5000", 7),
                a("GUNICORN_WORKERS", "8", 8)
            ]
        );
    }

    #[test]
    fn quotes_export_comments_and_continuations() {
        let text = concat!(
            "export A='single $quoted # not a comment'\n",
            "B=\"double \\\"x\\\" \\$y\"   # comment\n",
            "  C=plain#hash\n",
            "D=\n",
            "E='multi\nline'\n",
            "F=one\\\ntwo\n",
            "G = spaced\n",
            "H=\"a\"'b'c\n",
        );
        assert_eq!(
            values(text),
            [
                a("A", "single $quoted # not a comment", 1),
                a("B", "double \"x\" $y", 2),
                a("C", "plain#hash", 3),
                a("D", "", 4),
                a("E", "multi\nline", 5),
                a("F", "onetwo", 7),
                a("G", "spaced", 9),
                a("H", "abc", 10),
            ]
        );
    }

    #[test]
    fn ipv6_literals_with_brackets_need_no_quotes() {
        assert_eq!(
            values("REGISTRY_ADDRESS=[::1]\n"),
            [a("REGISTRY_ADDRESS", "[::1]", 1)]
        );
    }

    #[test]
    fn every_bad_line_is_reported_with_its_number() {
        let p = parse("GOOD=1\nBAD VALUE\n=x\nX=two words\nY='open\n");
        let lines: Vec<usize> = p.errors.iter().map(|e| e.line).collect();
        assert_eq!(lines, [2, 3, 4, 5], "{:?}", p.errors);
        assert_eq!(p.errors[0].key, "BAD");
        let m = &p.errors[3].message;
        assert!(
            m.contains("single quote opened on line 5 is never closed"),
            "{m}"
        );
        let unclosed = parse("Z=\"open \\\" still\n");
        let m = &unclosed.errors[0].message;
        assert!(
            m.contains("double quote opened on line 1 is never closed"),
            "{m}"
        );
        assert_eq!(p.get("GOOD").map(|a| a.value.as_str()), Some("1"));
    }

    #[test]
    fn dollar_signs_are_kept_and_remarked() {
        let p = parse("A=$HOME/x\nB='$literal'\n");
        assert_eq!(p.get("A").map(|a| a.value.as_str()), Some("$HOME/x"));
        assert_eq!(p.remarks.len(), 1);
        assert_eq!(p.remarks[0].key, "A");
    }

    #[test]
    fn a_later_assignment_wins() {
        let p = parse("A=1\nA=2\n");
        assert_eq!(
            p.get("A").map(|a| (a.value.as_str(), a.line)),
            Some(("2", 2))
        );
    }
}
