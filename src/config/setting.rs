//! What the table says about one setting ([`Setting`]), how a value is read and shown
//! ([`Kind`]), and the `settings!` macro that turns the table (`table.rs`) into the typed
//! [`Config`] fields, their defaults and the [`SETTINGS`] slice every level is read through.
//!
//! A setting is found by its key path in a registry:2 file (`storage.delete.enabled`), by a key
//! of the legacy flavored file (`storage_delete_enabled`), by a variable — registry:2's, derived
//! from each key path (`REGISTRY_STORAGE_DELETE_ENABLED`), and any named in the table
//! (`GUNICORN_WORKERS`) — and by its flag. Keys are compared ignoring case, `_` and `-`
//! ([`key_name`]), so `deleteuntagged`, `delete_untagged` and `deleteUntagged` are one key.

use super::source::Source;
use super::table::SETTINGS;
use super::yaml::Node;
use super::Config;

/// What a level gives for a setting: text (a variable, a flag) or a value of a YAML file.
#[derive(Clone, Copy)]
pub enum Input<'a> {
    Text(&'a str),
    Node(&'a Node),
}

/// How a value of one type is read from text and from YAML, and shown by `config`.
pub trait Kind {
    type Value;
    /// The placeholder of the flag in `--help` (`FILE`, `DURATION`).
    const VALUE_NAME: &'static str;
    /// A message for the operator on failure; the caller adds the file, line and key.
    fn text(s: &str) -> Result<Self::Value, String>;
    /// `None` for null: the setting keeps the value of the levels below.
    fn node(node: &Node) -> Result<Option<Self::Value>, String> {
        super::kinds::node_with(node, Self::text)
    }
    fn show(value: &Self::Value) -> String;
}

/// Reads an input with `K`; `None` when the input leaves the setting as it was.
pub fn read<K: Kind>(input: Input<'_>) -> Result<Option<K::Value>, String> {
    match input {
        Input::Text(t) => K::text(t).map(Some),
        Input::Node(n) => K::node(n),
    }
}

/// A section of a registry:2 file whose key names the choice (`storage: {filesystem: ...}`,
/// `auth: {htpasswd: ...}`); the keys under the chosen one are settings of their own.
pub struct Choice {
    /// The names that are choices; empty: any key is (and an unknown one is refused later).
    pub names: &'static [&'static str],
    /// What is chosen, for "more than one ... configured".
    pub what: &'static str,
    /// Added to that error.
    pub hint: &'static str,
    /// Settings a choice gives a value of its own when the file does not: (choice, key, value).
    pub defaults: &'static [(&'static str, &'static str, &'static str)],
}

impl Choice {
    pub fn accepts(&self, name: &str) -> bool {
        self.names.is_empty() || self.names.contains(&name)
    }
}

/// One row of the table.
pub struct Setting {
    /// Its name in `config` output, and its key path in a registry:2 file when `file`.
    pub key: &'static str,
    /// One line for `--help`, the man page and the field's documentation.
    pub doc: &'static str,
    pub value_name: &'static str,
    /// Whether `key` is read from a registry:2 file (and gives a `REGISTRY_...` variable).
    pub file: bool,
    /// Other key paths of a registry:2 file read for it (older spellings), each with its
    /// variable; applied before `key`, so `key` wins within one level.
    pub also: &'static [&'static str],
    /// Keys of the legacy flavored file.
    pub legacy: &'static [&'static str],
    /// Variables beyond those derived from the key paths, applied after them, in this order.
    pub vars: &'static [&'static str],
    pub flag: Option<&'static str>,
    pub short: Option<char>,
    /// Shown masked by `config`.
    pub secret: bool,
    /// Shown by `config` as part of something resolved from it (`http.addr`), or not at all.
    pub hidden: bool,
    pub choice: Option<&'static Choice>,
    pub set: fn(&mut Config, Input<'_>, Source) -> Result<(), String>,
    pub show: fn(&Config) -> (String, &Source),
    /// The default as `config` shows it.
    pub default: fn() -> String,
}

static NO_SOURCE: Source = Source::Default;

impl Setting {
    /// What the table leaves unsaid: no other names, shown by `config`.
    pub const BASE: Setting = Setting {
        key: "",
        doc: "",
        value_name: "",
        file: true,
        also: &[],
        legacy: &[],
        vars: &[],
        flag: None,
        short: None,
        secret: false,
        hidden: false,
        choice: None,
        set: |_, _, _| Ok(()),
        show: |_| (String::new(), &NO_SOURCE),
        default: String::new,
    };

    /// The key paths of a registry:2 file that set it, lowest precedence first.
    pub fn paths(&self) -> impl Iterator<Item = &'static str> {
        self.also
            .iter()
            .copied()
            .chain(self.file.then_some(self.key))
    }

    /// Its variables in the order they are applied within one level (a later one wins).
    pub fn variables(&self) -> impl Iterator<Item = String> {
        self.paths()
            .map(variable)
            .chain(self.vars.iter().map(|v| v.to_string()))
    }

    /// The value and where it came from in `c`.
    pub fn get<'c>(&self, c: &'c Config) -> (String, &'c Source) {
        (self.show)(c)
    }

    /// `key (or REGISTRY_KEY)`, for messages that say how to set it.
    pub fn hint(&self) -> String {
        match self.variables().last() {
            Some(v) => format!("{} (or {v})", self.key),
            None => self.key.to_string(),
        }
    }
}

/// registry:2's variable for a key path: `storage.delete.enabled` is
/// `REGISTRY_STORAGE_DELETE_ENABLED`.
pub fn variable(path: &str) -> String {
    format!("REGISTRY_{}", path.to_ascii_uppercase().replace('.', "_"))
}

/// A key as compared: without case, `_` and `-`.
pub fn key_name(key: &str) -> String {
    key.chars()
        .filter(|c| *c != '_' && *c != '-')
        .flat_map(char::to_lowercase)
        .collect()
}

/// A key path as compared, each key by [`key_name`].
fn path_name(path: &str) -> String {
    path.split('.').map(key_name).collect::<Vec<_>>().join(".")
}

/// The setting of a key path (already by [`key_name`]) in a registry:2 file.
pub fn at_path(path: &str) -> Option<&'static Setting> {
    SETTINGS
        .iter()
        .find(|s| s.paths().any(|p| path_name(p) == path))
}

/// Whether settings live below this key path (already by [`key_name`]).
pub fn is_section(path: &str) -> bool {
    let prefix = format!("{path}.");
    SETTINGS
        .iter()
        .any(|s| s.paths().any(|p| path_name(p).starts_with(&prefix)))
}

/// The setting of a key of the legacy flavored file.
pub fn at_legacy(key: &str) -> Option<&'static Setting> {
    let key = key_name(key);
    SETTINGS
        .iter()
        .find(|s| s.legacy.iter().any(|l| key_name(l) == key))
}

/// The setting named `key` in the table (a key the code itself names).
pub fn named(key: &str) -> &'static Setting {
    SETTINGS
        .iter()
        .find(|s| s.key == key)
        .unwrap_or_else(|| panic!("no setting {key} in the table"))
}

/// Whether a variable sets something.
pub fn is_variable(name: &str) -> bool {
    SETTINGS.iter().any(|s| s.variables().any(|v| v == name))
}

/// Generates, from the table, the [`Config`] struct (its hand-resolved fields, then one
/// `Sourced` field per setting and per group), the group structs, the defaults
/// (`Config::table_defaults`) and `SETTINGS`, each row with the functions that set and show
/// its field. A row is
///
/// ```text
/// /// The doc line.
/// VIS FIELD: TYPE = DEFAULT, KIND, "key.path" { OTHER Setting FIELDS, } [=> STORE_FN]
/// ```
///
/// where KIND implements [`Kind`] with `Value = TYPE`, the braces hold the rest of the
/// [`Setting`] (`legacy: &[..], flag: Some(..),` ...: [`Setting::BASE`] fills what they omit)
/// and STORE_FN, if given, stores the value instead of the field (a value that sets two).
/// Within a group, each field's source is one part of the group's [`Source::Parts`], named
/// by the field.
macro_rules! settings {
    (
        $(#[$cattr:meta])*
        pub struct $Config:ident {
            $( $(#[$xattr:meta])* pub $xfield:ident : $XT:ty = $xdefault:expr, )*
        }
        singles {
            $(
                $(#[doc = $doc:literal])+
                $vis:vis $field:ident : $T:ty = $default:expr, $kind:ty, $key:literal
                { $($meta:tt)* } $(=> $store:path)?
            )*
        }
        groups {
            $(
                $(#[doc = $gdoc:literal])+
                pub $group:ident : $Group:ident {
                    $(
                        $(#[doc = $pdoc:literal])+
                        $part:ident : $PT:ty = $pdefault:expr, $pkind:ty, $pkey:literal
                        { $($pmeta:tt)* }
                    )*
                }
            )*
        }
    ) => {
        $(#[$cattr])*
        pub struct $Config {
            $( $(#[$xattr])* pub $xfield: $XT, )*
            $( $(#[doc = $doc])+ $vis $field: Sourced<$T>, )*
            $( $(#[doc = $gdoc])+ pub $group: Sourced<$Group>, )*
        }

        $(
            $(#[doc = $gdoc])+
            #[derive(Debug, Clone, PartialEq, Eq)]
            pub struct $Group {
                $( $(#[doc = $pdoc])+ pub $part: $PT, )*
            }

            impl $Group {
                /// The parts of its source, one per field.
                const PARTS: &'static [&'static str] = &[$(stringify!($part)),*];
            }

            impl Default for $Group {
                fn default() -> Self {
                    $Group { $( $part: $pdefault, )* }
                }
            }
        )*

        impl $Config {
            /// Every setting at its default (the default's source is [`Source::Default`]).
            pub(super) fn table_defaults() -> $Config {
                $Config {
                    $( $xfield: $xdefault, )*
                    $( $field: Sourced::default_value($default), )*
                    $( $group: Sourced::default_value($Group::default()), )*
                }
            }
        }

        /// The table: every setting, in the order the variables of one level are applied.
        pub static SETTINGS: &[Setting] = &[
            $(
                Setting {
                    key: $key,
                    doc: concat!($($doc),+),
                    value_name: <$kind as Kind>::VALUE_NAME,
                    set: |c, input, source| {
                        if let Some(v) = read::<$kind>(input)? {
                            settings!(@store c, v, source, $field $(, $store)?);
                        }
                        Ok(())
                    },
                    show: |c| (<$kind as Kind>::show(&c.$field.value), &c.$field.source),
                    default: || <$kind as Kind>::show(&$default),
                    $($meta)*
                    ..Setting::BASE
                },
            )*
            $($(
                Setting {
                    key: $pkey,
                    doc: concat!($($pdoc),+),
                    value_name: <$pkind as Kind>::VALUE_NAME,
                    set: |c, input, source| {
                        if let Some(v) = read::<$pkind>(input)? {
                            c.$group.value.$part = v;
                            c.$group.source = with_part(
                                &c.$group.source,
                                $Group::PARTS,
                                stringify!($part),
                                source,
                            );
                        }
                        Ok(())
                    },
                    show: |c| {
                        let g = &c.$group;
                        (<$pkind as Kind>::show(&g.value.$part), g.source.part(stringify!($part)))
                    },
                    default: || <$pkind as Kind>::show(&$pdefault),
                    $($pmeta)*
                    ..Setting::BASE
                },
            )*)*
        ];
    };
    (@store $c:ident, $v:ident, $source:ident, $field:ident) => {
        $c.$field = Sourced::new($v, $source)
    };
    (@store $c:ident, $v:ident, $source:ident, $field:ident, $store:path) => {
        $store($c, $v, $source)
    };
}

pub(super) use settings;
