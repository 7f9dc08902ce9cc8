//! A job's process environment: the runner's base (minimal, or inherited with
//! `--inherit-env`), the job's own `env` pairs when their names are allowed,
//! and the job's fields as `REPOBOX_*`, which nothing overrides.

use std::ffi::OsString;
use std::path::Path;

use repobox_models::Job;

/// `PATH` of the minimal environment.
pub(crate) const MINIMAL_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// Names a job may never set, whatever `--deny-env` says: the runner's
/// own, and names that make a shell, a loader or a common tool run code or
/// load a file named by the value.
pub const ALWAYS_DENIED: &[&str] = &[
    "PATH",
    "HOME",
    "TMPDIR",
    // Shells: startup files, traced prompts, word splitting, functions.
    "BASH_ENV",
    "ENV",
    "SHELLOPTS",
    "BASHOPTS",
    "PS4",
    "PROMPT_COMMAND",
    "IFS",
    "CDPATH",
    "GLOBIGNORE",
    "ZDOTDIR",
    // The C library: charset converters, locales, host aliases.
    "GCONV_PATH",
    "LOCPATH",
    "NLSPATH",
    "HOSTALIASES",
    "RESOLV_HOST_CONF",
    // Tools that read code, hooks or modules from the environment.
    "JAVA_TOOL_OPTIONS",
    "JDK_JAVA_OPTIONS",
    "CLASSPATH",
    "SSH_ASKPASS",
    "EDITOR",
    "VISUAL",
    "PAGER",
    "BROWSER",
    "MANPAGER",
    // Build tools and archivers that take options, makefiles, compilers or
    // wrappers from the environment.
    "TAR_OPTIONS",
    "MAKEFLAGS",
    "GNUMAKEFLAGS",
    "MFLAGS",
    "MAKEFILES",
    "CC",
    "CXX",
    "CPP",
    "LD",
    "AR",
    "AS",
    "CFLAGS",
    "CXXFLAGS",
    "CPPFLAGS",
    "LDFLAGS",
    "RUSTC",
    "RUSTC_WRAPPER",
    "RUSTFLAGS",
    "RUSTDOCFLAGS",
    "MAVEN_OPTS",
    "GRADLE_OPTS",
    "KUBECONFIG",
    "GOFLAGS",
    "GOENV",
    "GOTOOLCHAIN",
    "GOPROXY",
    "GOPATH",
    "GOROOT",
    "GOBIN",
    "GOCACHE",
    "GOMODCACHE",
    "GOINSECURE",
    "GOPRIVATE",
    "GONOPROXY",
    "GONOSUMDB",
    "GOSUMDB",
    "GOEXPERIMENT",
    // Where tools find their config, certificates, proxies and terminal
    // descriptions.
    "CURL_HOME",
    "CURL_CA_BUNDLE",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "SSLKEYLOGFILE",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "NO_PROXY",
    "TERMINFO",
    "TERMINFO_DIRS",
    "TZDIR",
    "INPUTRC",
];

/// Prefixes a job may never set: the dynamic loaders' (`LD_PRELOAD`,
/// `DYLD_INSERT_LIBRARIES`, ...), the C library's tunables, the runner's own,
/// and whole families of tools whose variables load code or config: git
/// (`GIT_CONFIG_PARAMETERS`, `GIT_SSH_COMMAND`, ...), the XDG base
/// directories (where git and curl find their config), Python, Perl, Ruby,
/// Node and npm, yarn, pip, gem, bundler, cargo, cgo, Lua, Java, OpenSSL,
/// `less`, Docker. A list like this is never complete: see
/// [`ProcessHandler::allow_env`](crate::ProcessHandler::allow_env).
pub const ALWAYS_DENIED_PREFIXES: &[&str] = &[
    "LD_",
    "DYLD_",
    "GLIBC_",
    "MALLOC_",
    "REPOBOX_",
    "GIT_",
    "XDG_",
    "PYTHON",
    "PERL",
    "RUBY",
    "NODE_",
    "NPM_CONFIG_",
    "YARN_",
    "PIP_",
    "GEM_",
    "BUNDLE_",
    "CARGO_",
    "CGO_",
    "LUA_",
    "_JAVA_",
    "OPENSSL_",
    "LESS",
    "DOCKER_",
];

/// Why a job's environment was refused; the job fails with it. It names the
/// variable (escaped and shortened), never its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvRefused {
    /// The variable's name, escaped and shortened for a message.
    pub name: String,
    /// Why it may not be set.
    pub reason: &'static str,
}

impl std::fmt::Display for EnvRefused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the job's env may not set {}: {}", self.name, self.reason)
    }
}

impl std::error::Error for EnvRefused {}

impl EnvRefused {
    fn new(name: &str, reason: &'static str) -> Self {
        let mut shown: String = name.chars().take(64).flat_map(char::escape_debug).collect();
        if name.chars().count() > 64 {
            shown.push('…');
        }
        EnvRefused {
            name: format!("\"{shown}\""),
            reason,
        }
    }
}

/// Whether `name` is `[A-Z_][A-Z0-9_]*`.
fn well_formed(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(b'A'..=b'Z' | b'_')) && bytes.all(|b| matches!(b, b'A'..=b'Z' | b'0'..=b'9' | b'_'))
}

/// Whether `name` is in an operator's deny list: an exact name, or a prefix
/// ending in `*`.
fn listed(name: &str, list: &[String]) -> bool {
    list.iter().any(|d| match d.strip_suffix('*') {
        Some(prefix) => name.starts_with(prefix),
        None => d == name,
    })
}

/// Checks one name and value a job asks for.
pub(crate) fn check(name: &str, value: &str, rules: &EnvRules<'_>) -> Result<(), EnvRefused> {
    if !well_formed(name) {
        return Err(EnvRefused::new(name, "names must match [A-Z_][A-Z0-9_]*"));
    }
    if ALWAYS_DENIED.contains(&name) || ALWAYS_DENIED_PREFIXES.iter().any(|p| name.starts_with(p)) {
        return Err(EnvRefused::new(
            name,
            "the runner sets it, or it can make programs run code",
        ));
    }
    if listed(name, rules.deny) {
        return Err(EnvRefused::new(name, "the runner's --deny-env refuses it"));
    }
    if !rules.allow.is_empty() && !listed(name, rules.allow) {
        return Err(EnvRefused::new(name, "the runner's --allow-env does not list it"));
    }
    if value.contains('\0') {
        return Err(EnvRefused::new(name, "a value may not hold a NUL byte"));
    }
    Ok(())
}

/// What the environment is built from.
pub(crate) struct EnvRules<'a> {
    pub inherit: bool,
    pub deny: &'a [String],
    /// When not empty, the only names a job may set.
    pub allow: &'a [String],
}

/// The whole environment of a job's process, or why the job may not run.
pub(crate) fn environment(
    job: &Job,
    workdir: &Path,
    rules: &EnvRules<'_>,
) -> Result<Vec<(OsString, OsString)>, EnvRefused> {
    let mut env: Vec<(OsString, OsString)> = Vec::new();
    if rules.inherit {
        // The runner's own Redis settings (its URL may hold a password) and
        // its REPOBOX_* never reach a job.
        env.extend(std::env::vars_os().filter(|(name, _)| {
            let name = name.to_string_lossy();
            !name.starts_with("REDIS_") && !name.starts_with("REPOBOX_")
        }));
    } else {
        env.push(("PATH".into(), MINIMAL_PATH.into()));
        env.push(("HOME".into(), workdir.into()));
        env.push(("LANG".into(), "C.UTF-8".into()));
    }
    env.push(("TMPDIR".into(), workdir.into()));
    let mut seen: Vec<&str> = Vec::with_capacity(job.env.len());
    for (name, value) in &job.env {
        check(name, value, rules)?;
        if seen.contains(&name.as_str()) {
            return Err(EnvRefused::new(name, "it is given twice"));
        }
        seen.push(name);
        env.push((name.into(), value.into()));
    }
    let fields = [
        ("REPOBOX_JOB_ID", job.id.clone()),
        ("REPOBOX_USER_ID", job.user_id.clone()),
        ("REPOBOX_REPO_URL", job.repo_url.clone()),
        ("REPOBOX_CREATED_AT", job.created_at.to_string()),
        ("REPOBOX_RETRIES", job.retries.to_string()),
        ("REPOBOX_RUN_ID", job.run_id.clone().unwrap_or_default()),
    ];
    for (name, value) in fields {
        if value.contains('\0') {
            return Err(EnvRefused::new(name, "a job field may not hold a NUL byte"));
        }
        env.push((name.into(), value.into()));
    }
    env.push(("REPOBOX_WORKDIR".into(), workdir.into()));
    Ok(env)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked_and_values_never_shown() {
        let deny = vec!["AWS_*".to_owned(), "SECRET".to_owned()];
        let rules = EnvRules {
            inherit: false,
            deny: &deny,
            allow: &[],
        };
        assert!(check("CI", "1", &rules).is_ok());
        assert!(check("_X9", "", &rules).is_ok());
        for bad in ["", "lower", "9X", "A=B", "A-B", "É", "A B"] {
            let e = check(bad, "v", &rules).unwrap_err();
            assert_eq!(e.reason, "names must match [A-Z_][A-Z0-9_]*", "{bad}");
        }
        for refused in [
            "PATH",
            "HOME",
            "LD_PRELOAD",
            "DYLD_INSERT_LIBRARIES",
            "REPOBOX_JOB_ID",
            "BASH_ENV",
            "GIT_CONFIG_PARAMETERS",
            "GIT_SSH_COMMAND",
            "GCONV_PATH",
            "GLIBC_TUNABLES",
            "PYTHONSTARTUP",
            "PERLLIB",
            "LESSOPEN",
            "LUA_INIT",
            "TAR_OPTIONS",
            "MAKEFLAGS",
            "XDG_CONFIG_HOME",
            "GOFLAGS",
            "AWS_KEY",
            "SECRET",
        ] {
            assert!(check(refused, "v", &rules).is_err(), "{refused}");
        }
        let e = check("TOKEN", "s3cr3t\0", &rules).unwrap_err();
        assert!(!e.to_string().contains("s3cr3t"), "{e}");
        let long = "x".repeat(500);
        let e = check(&format!("{long}\n"), "hunter2", &rules).unwrap_err();
        assert!(e.name.len() < 80 && !e.to_string().contains("hunter2"), "{e}");

        // An allow list: only what it names, never what is always refused.
        let allow = vec!["CI".to_owned(), "BUILD_*".to_owned(), "GIT_*".to_owned()];
        let rules = EnvRules {
            inherit: false,
            deny: &[],
            allow: &allow,
        };
        assert!(check("CI", "1", &rules).is_ok());
        assert!(check("BUILD_TARGET", "x", &rules).is_ok());
        let e = check("OTHER", "1", &rules).unwrap_err();
        assert_eq!(e.reason, "the runner's --allow-env does not list it");
        assert!(check("GIT_DIR", "x", &rules).is_err());
    }
}
