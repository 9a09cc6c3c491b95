//! The `/etc/sysconfig/docker-registry` parser (`config::sysconfig`): shell quoting, escapes,
//! continuations, `export`, comments.
#![no_main]

use docker_registry::config::sysconfig;
use libfuzzer_sys::fuzz_target;

/// `value` in single quotes, each `'` written as `'\''`, as a shell script would quote it.
fn single_quoted(value: &str) -> String {
    format!("'{}'", value.replace('\'', r"'\''"))
}

fuzz_target!(|bytes: &[u8]| {
    let Ok(text) = std::str::from_utf8(bytes) else {
        return;
    };
    let parsed = sysconfig::parse(text);
    let lines = text.split('\n').count();
    let mut previous = 0;
    for a in &parsed.assignments {
        assert!(
            a.line >= previous && a.line <= lines,
            "line {} of {lines}",
            a.line
        );
        previous = a.line;
        let mut name = a.name.chars();
        assert!(name
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_'));
        assert!(name.all(|c| c.is_ascii_alphanumeric() || c == '_'));
    }
    for p in parsed.errors.iter().chain(&parsed.remarks) {
        assert!(
            p.line >= 1 && p.line <= lines,
            "problem on line {} of {lines}",
            p.line
        );
    }
    // What we read, written back the way a script would quote it, reads back the same.
    let written: String = parsed
        .assignments
        .iter()
        .map(|a| format!("{}={}\n", a.name, single_quoted(&a.value)))
        .collect();
    let reread = sysconfig::parse(&written);
    assert!(reread.errors.is_empty(), "{written:?}: {:?}", reread.errors);
    let pairs = |p: &sysconfig::Parsed| -> Vec<(String, String)> {
        p.assignments
            .iter()
            .map(|a| (a.name.clone(), a.value.clone()))
            .collect()
    };
    assert_eq!(pairs(&reread), pairs(&parsed));
});
