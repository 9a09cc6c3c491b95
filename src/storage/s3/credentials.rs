//! Where the S3 driver's credentials come from: the keys in the configuration, else the
//! standard AWS chain in the order the AWS CLI and SDKs follow it: `AWS_ACCESS_KEY_ID` and
//! `AWS_SECRET_ACCESS_KEY`, a profile of the shared files (`~/.aws/credentials`,
//! `~/.aws/config`; `AWS_PROFILE`, else `default`), web identity
//! (`AWS_WEB_IDENTITY_TOKEN_FILE`, as on EKS), ECS container credentials, EC2 instance
//! metadata.
//!
//! `object_store` does all but the shared files: they are read here, and a profile's keys
//! are handed to it as written keys. Profiles that get credentials some other way
//! (`role_arn`, `sso_session`, `credential_process`) are refused with a message rather than
//! skipped, so that a registry never runs as someone other than the admin meant.

use super::S3Options;
use std::collections::HashMap;
use std::path::PathBuf;

/// Keys found in a profile.
#[derive(Clone, PartialEq, Eq)]
pub struct ProfileKeys {
    pub(super) access_key: String,
    pub(super) secret_key: String,
    pub(super) session_token: Option<String>,
}

/// The link of the chain that gives the credentials.
#[derive(Clone, PartialEq, Eq)]
pub enum CredentialSource {
    /// `storage.s3.accesskey` and `secretkey`.
    Configured { access_key: String },
    /// `AWS_ACCESS_KEY_ID` and `AWS_SECRET_ACCESS_KEY` (and `AWS_SESSION_TOKEN`).
    Environment { access_key: String },
    /// A profile of the shared files; `chosen_by` is `AWS_PROFILE` when that named it.
    Profile {
        name: String,
        file: PathBuf,
        chosen_by: Option<&'static str>,
        keys: ProfileKeys,
    },
    /// A web identity token exchanged for a role (`AssumeRoleWithWebIdentity`).
    WebIdentity { token_file: String, role: String },
    /// The ECS agent's endpoint.
    Container { variable: &'static str },
    /// EC2 instance metadata (IMDSv2).
    InstanceMetadata,
}

impl std::fmt::Debug for ProfileKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ProfileKeys({})", masked(&self.access_key))
    }
}

impl std::fmt::Debug for CredentialSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

/// An access key id as shown: its first four characters (the kind: `AKIA` long-term,
/// `ASIA` temporary), the rest masked.
fn masked(access_key: &str) -> String {
    let head: String = access_key.chars().take(4).collect();
    format!("{head}****")
}

impl CredentialSource {
    /// One line for `docker-registry config` and the start-up log; no secret in it.
    pub fn describe(&self) -> String {
        match self {
            CredentialSource::Configured { access_key } => {
                format!("storage.s3.accesskey {} and secretkey", masked(access_key))
            }
            CredentialSource::Environment { access_key } => format!(
                "AWS_ACCESS_KEY_ID {} and AWS_SECRET_ACCESS_KEY",
                masked(access_key)
            ),
            CredentialSource::Profile {
                name, file, keys, ..
            } => format!(
                "profile {name} in {} (access key {}{})",
                file.display(),
                masked(&keys.access_key),
                if keys.session_token.is_some() {
                    ", session token"
                } else {
                    ""
                }
            ),
            CredentialSource::WebIdentity { token_file, role } => {
                format!("web identity: role {role}, token {token_file}")
            }
            CredentialSource::Container { variable } => {
                format!("ECS container credentials ({variable})")
            }
            CredentialSource::InstanceMetadata => {
                "EC2 instance metadata (nothing else in the chain is set)".to_owned()
            }
        }
    }

    /// The variable that chose this link, if one did.
    pub fn variable(&self) -> Option<&'static str> {
        match self {
            CredentialSource::Configured { .. } | CredentialSource::InstanceMetadata => None,
            CredentialSource::Environment { .. } => Some("AWS_ACCESS_KEY_ID"),
            CredentialSource::Profile { chosen_by, .. } => *chosen_by,
            CredentialSource::WebIdentity { .. } => Some("AWS_WEB_IDENTITY_TOKEN_FILE"),
            CredentialSource::Container { variable } => Some(variable),
        }
    }
}

/// Finds the link of the chain that gives the credentials, reading variables through `env`
/// (the process environment in use; a map in tests).
pub fn resolve(
    options: &S3Options,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<CredentialSource, String> {
    let var = |name: &str| env(name).filter(|v| !v.is_empty());
    if !options.accesskey.is_empty() {
        return Ok(CredentialSource::Configured {
            access_key: options.accesskey.clone(),
        });
    }
    if let Some(access_key) = var("AWS_ACCESS_KEY_ID") {
        if var("AWS_SECRET_ACCESS_KEY").is_none() {
            return Err(
                "AWS_ACCESS_KEY_ID is set but AWS_SECRET_ACCESS_KEY is not; set both, or neither"
                    .to_owned(),
            );
        }
        return Ok(CredentialSource::Environment { access_key });
    }
    if let Some(found) = profile(&var)? {
        return Ok(found);
    }
    if let Some(token_file) = var("AWS_WEB_IDENTITY_TOKEN_FILE") {
        let role = var("AWS_ROLE_ARN").ok_or_else(|| {
            "AWS_WEB_IDENTITY_TOKEN_FILE is set but AWS_ROLE_ARN is not; set the role to assume"
                .to_owned()
        })?;
        return Ok(CredentialSource::WebIdentity { token_file, role });
    }
    for variable in [
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    ] {
        if var(variable).is_some() {
            return Ok(CredentialSource::Container { variable });
        }
    }
    Ok(CredentialSource::InstanceMetadata)
}

/// The profile in use: the one `AWS_PROFILE` (or `AWS_DEFAULT_PROFILE`) names, with that
/// variable, else `default`.
fn profile_name(var: &dyn Fn(&str) -> Option<String>) -> (String, Option<&'static str>) {
    let chosen_by = ["AWS_PROFILE", "AWS_DEFAULT_PROFILE"]
        .into_iter()
        .find(|v| var(v).is_some());
    let name = chosen_by
        .and_then(var)
        .unwrap_or_else(|| "default".to_owned());
    (name, chosen_by)
}

/// One of the shared files: `$variable`, else `~/default`.
fn aws_file(
    var: &dyn Fn(&str) -> Option<String>,
    variable: &str,
    default: &str,
) -> Option<PathBuf> {
    var(variable)
        .map(PathBuf::from)
        .or_else(|| var("HOME").map(|h| PathBuf::from(h).join(default)))
}

/// The section of `profile` in the config file, where every profile but `default` is
/// `[profile NAME]`.
pub fn config_section(profile: &str) -> String {
    if profile == "default" {
        profile.to_owned()
    } else {
        format!("profile {profile}")
    }
}

/// The region the profile in use names in the shared config file (`~/.aws/config`, or
/// `AWS_CONFIG_FILE`), as the AWS CLI reads it: the region, the file, the line and the
/// profile's name. `None` when there is none (or the file cannot be read).
pub fn profile_region(
    var: &dyn Fn(&str) -> Option<String>,
) -> Option<(String, PathBuf, usize, String)> {
    let var = |name: &str| var(name).filter(|v| !v.is_empty());
    let (name, _) = profile_name(&var);
    let path = aws_file(&var, "AWS_CONFIG_FILE", ".aws/config")?;
    let text = std::fs::read_to_string(&path).ok()?;
    let values = ini_section(&text, &config_section(&name))?;
    let (region, line) = values.get("region").filter(|(v, _)| !v.is_empty())?.clone();
    Some((region, path, line, name))
}

/// The profile named by `AWS_PROFILE` (an error if it is nowhere) or `default` (nothing if
/// it is nowhere), from the credentials file, else the config file.
fn profile(var: &dyn Fn(&str) -> Option<String>) -> Result<Option<CredentialSource>, String> {
    let (name, chosen_by) = profile_name(var);
    let files = [
        (
            aws_file(var, "AWS_SHARED_CREDENTIALS_FILE", ".aws/credentials"),
            false,
        ),
        (aws_file(var, "AWS_CONFIG_FILE", ".aws/config"), true),
    ];
    let mut looked = Vec::new();
    for (path, is_config) in files {
        let Some(path) = path else { continue };
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(format!("{}: {e}", path.display())),
        };
        let section = if is_config {
            config_section(&name)
        } else {
            name.clone()
        };
        looked.push(format!("[{section}] in {}", path.display()));
        let Some(values) = ini_section(&text, &section) else {
            continue;
        };
        let get = |k: &str| {
            values
                .get(k)
                .map(|(v, _)| v)
                .filter(|v| !v.is_empty())
                .cloned()
        };
        let at = format!("profile {name} in {}", path.display());
        if let (Some(access_key), Some(secret_key)) =
            (get("aws_access_key_id"), get("aws_secret_access_key"))
        {
            return Ok(Some(CredentialSource::Profile {
                name,
                file: path,
                chosen_by,
                keys: ProfileKeys {
                    access_key,
                    secret_key,
                    session_token: get("aws_session_token"),
                },
            }));
        }
        if let Some(how) = [
            "role_arn",
            "sso_session",
            "sso_start_url",
            "credential_process",
        ]
        .into_iter()
        .find(|k| get(k).is_some())
        {
            return Err(format!(
                "{at}: gets its credentials with {how}, which docker-registry does not do; \
                 give the profile aws_access_key_id and aws_secret_access_key, or set \
                 storage.s3.accesskey and secretkey"
            ));
        }
        if get("aws_access_key_id").is_some() || get("aws_secret_access_key").is_some() {
            return Err(format!(
                "{at}: has only one of aws_access_key_id and aws_secret_access_key; give both"
            ));
        }
    }
    match chosen_by {
        Some(v) => Err(format!(
            "{v}={name}: no such profile with keys (looked for {}); fix {v} or the files",
            if looked.is_empty() {
                "~/.aws/credentials and ~/.aws/config, which do not exist".to_owned()
            } else {
                looked.join(" and ")
            }
        )),
        None => Ok(None),
    }
}

/// The `key = value` pairs of `[section]` in an INI file as the AWS files write them
/// (`#` and `;` comments; keys case-insensitive), each with its 1-based line; `None` if
/// there is no such section.
fn ini_section(text: &str, section: &str) -> Option<HashMap<String, (String, usize)>> {
    let mut found: Option<HashMap<String, (String, usize)>> = None;
    let mut inside = false;
    for (number, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            inside = name.split_whitespace().collect::<Vec<_>>().join(" ") == section;
            if inside {
                found.get_or_insert_with(HashMap::new);
            }
            continue;
        }
        if !inside {
            continue;
        }
        if let (Some(values), Some((k, v))) = (found.as_mut(), line.split_once('=')) {
            values.insert(
                k.trim().to_ascii_lowercase(),
                (v.trim().to_owned(), number + 1),
            );
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(vars: &[(&str, String)]) -> impl Fn(&str) -> Option<String> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect();
        move |k| vars.get(k).cloned()
    }

    fn home_with(credentials: &str, config: &str) -> tempfile::TempDir {
        let home = tempfile::tempdir().expect("tmp");
        let aws = home.path().join(".aws");
        std::fs::create_dir(&aws).expect("mkdir");
        std::fs::write(aws.join("credentials"), credentials).expect("write");
        std::fs::write(aws.join("config"), config).expect("write");
        home
    }

    const CREDENTIALS: &str = "# keys\n[default]\naws_access_key_id = AKIADEFAULT\n\
        aws_secret_access_key = defaultsecret\n\n[ dev ]\nAWS_ACCESS_KEY_ID=ASIADEV\n\
        aws_secret_access_key=devsecret\naws_session_token = FQoGZXIvYXdzEXAMPLE\n";
    const CONFIG: &str = "[default]\nregion = eu-west-1\n[profile ops]\n\
        aws_access_key_id = AKIAOPS\naws_secret_access_key = opssecret\n\
        [profile sso]\nsso_session = corp\n";

    #[test]
    fn the_chain_goes_in_order() {
        let home = home_with(CREDENTIALS, CONFIG);
        let h = ("HOME", home.path().display().to_string());
        let o = S3Options::default();
        let got = |vars: &[(&str, String)]| resolve(&o, &env(vars));
        // Written keys first.
        let written = S3Options {
            accesskey: "AKIAWRITTEN".into(),
            secretkey: "s".into(),
            ..S3Options::default()
        };
        assert!(matches!(
            resolve(
                &written,
                &env(&[h.clone(), ("AWS_ACCESS_KEY_ID", "x".into())])
            ),
            Ok(CredentialSource::Configured { .. })
        ));
        // Then the environment's keys, even with a profile named.
        let both = [
            h.clone(),
            ("AWS_ACCESS_KEY_ID", "AKIAENV".into()),
            ("AWS_SECRET_ACCESS_KEY", "envsecret".into()),
            ("AWS_PROFILE", "dev".into()),
        ];
        assert!(matches!(
            got(&both),
            Ok(CredentialSource::Environment { .. })
        ));
        // Then the profile: `default` unless AWS_PROFILE names one.
        let Ok(CredentialSource::Profile {
            name,
            keys,
            chosen_by,
            ..
        }) = got(std::slice::from_ref(&h))
        else {
            panic!("default profile");
        };
        assert_eq!((name.as_str(), chosen_by), ("default", None));
        assert_eq!(keys.secret_key, "defaultsecret");
        let Ok(CredentialSource::Profile {
            keys, chosen_by, ..
        }) = got(&[h.clone(), ("AWS_PROFILE", "dev".into())])
        else {
            panic!("dev profile");
        };
        assert_eq!(chosen_by, Some("AWS_PROFILE"));
        assert_eq!(keys.access_key, "ASIADEV");
        assert_eq!(keys.session_token.as_deref(), Some("FQoGZXIvYXdzEXAMPLE"));
        // A profile only in the config file.
        let Ok(CredentialSource::Profile { keys, file, .. }) =
            got(&[h.clone(), ("AWS_PROFILE", "ops".into())])
        else {
            panic!("ops profile");
        };
        assert_eq!(keys.secret_key, "opssecret");
        assert!(file.ends_with(".aws/config"));
        // Without files: web identity, then the container, then instance metadata.
        assert!(matches!(
            got(&[
                ("AWS_WEB_IDENTITY_TOKEN_FILE", "/t".into()),
                ("AWS_ROLE_ARN", "arn:aws:iam::1:role/r".into())
            ]),
            Ok(CredentialSource::WebIdentity { .. })
        ));
        assert!(matches!(
            got(&[("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "/v2/c".into())]),
            Ok(CredentialSource::Container { .. })
        ));
        assert!(matches!(got(&[]), Ok(CredentialSource::InstanceMetadata)));
    }

    #[test]
    fn a_profile_names_its_region_in_the_config_file() {
        let home = home_with(CREDENTIALS, CONFIG);
        let h = ("HOME", home.path().display().to_string());
        let (region, file, line, profile) =
            profile_region(&env(std::slice::from_ref(&h))).expect("default's region");
        assert_eq!(
            (region.as_str(), line, profile.as_str()),
            ("eu-west-1", 2, "default")
        );
        assert!(file.ends_with(".aws/config"));
        assert!(profile_region(&env(&[h.clone(), ("AWS_PROFILE", "ops".into())])).is_none());
        let other = home.path().join("other-config");
        std::fs::write(&other, "[profile ops]\nregion = ap-south-1\n").expect("write");
        let (region, file, ..) = profile_region(&env(&[
            h,
            ("AWS_PROFILE", "ops".into()),
            ("AWS_CONFIG_FILE", other.display().to_string()),
        ]))
        .expect("ops's region");
        assert_eq!((region.as_str(), file), ("ap-south-1", other));
    }

    #[test]
    fn profiles_that_cannot_be_used_are_named() {
        let home = home_with(CREDENTIALS, CONFIG);
        let h = ("HOME", home.path().display().to_string());
        let o = S3Options::default();
        let err = resolve(&o, &env(&[h.clone(), ("AWS_PROFILE", "nope".into())]))
            .expect_err("missing profile");
        assert!(
            err.starts_with("AWS_PROFILE=nope: no such profile"),
            "{err}"
        );
        assert!(err.contains("[profile nope] in"), "{err}");
        let err = resolve(&o, &env(&[h, ("AWS_PROFILE", "sso".into())])).expect_err("sso");
        assert!(err.contains("profile sso in"), "{err}");
        assert!(err.contains("sso_session"), "{err}");
        let err = resolve(&o, &env(&[("AWS_ACCESS_KEY_ID", "AKIA".into())])).expect_err("half");
        assert!(err.contains("AWS_SECRET_ACCESS_KEY is not"), "{err}");
    }

    #[test]
    fn descriptions_hold_no_secret() {
        let home = home_with(CREDENTIALS, CONFIG);
        let h = ("HOME", home.path().display().to_string());
        let found = resolve(
            &S3Options::default(),
            &env(&[h, ("AWS_PROFILE", "dev".into())]),
        )
        .expect("dev");
        let text = format!("{} {found:?}", found.describe());
        assert!(text.contains("profile dev in"), "{text}");
        assert!(text.contains("ASIA****"), "{text}");
        for secret in ["devsecret", "FQoGZXIvYXdz", "ASIADEV"] {
            assert!(!text.contains(secret), "{text}");
        }
    }
}
