//! `colloquy new-plugin <kind> <name>`: a standalone plugin crate to start from.
//!
//! The crate lives outside any workspace (its own `[workspace]` table), depends on this
//! repository's `plugin-api` by path, and holds a working in-memory implementation of the
//! chosen kind, so that `cargo build --release` in it yields a `.so` that `type: <name>` loads.
//! The templates are the files under `host/templates/plugin/`.

use std::fmt;
use std::path::{Path, PathBuf};

use colloquy_plugin_api::CONTRACT_VERSION;

use crate::cli::NewPluginArgs;
use crate::plugins::Kind;

const CARGO_TOML: &str = include_str!("../templates/plugin/Cargo.toml.tmpl");
const README: &str = include_str!("../templates/plugin/README.md.tmpl");
const GITIGNORE: &str = include_str!("../templates/plugin/gitignore.tmpl");
const TRACKER_STORE: &str = include_str!("../templates/plugin/tracker_store.rs.tmpl");
const LOCK_STORE: &str = include_str!("../templates/plugin/lock_store.rs.tmpl");
const EVENT_BROKER: &str = include_str!("../templates/plugin/event_broker.rs.tmpl");
const NLU_CONNECTOR: &str = include_str!("../templates/plugin/nlu_connector.rs.tmpl");
const MODEL_SOURCE: &str = include_str!("../templates/plugin/model_source.rs.tmpl");

/// Where this binary's sources had the plugin API when it was compiled.
pub fn default_plugin_api_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugin-api")
}

/// Names taken by built-ins: `type:` resolves them before any plugin, so a plugin with one of
/// these names could never be selected.
const RESERVED: &[&str] = &["in_memory", "file"];

#[derive(Debug, PartialEq, Eq)]
pub enum ScaffoldError {
    Kind(String),
    Name(String),
    Exists(PathBuf),
    PluginApi(String),
    Io(String),
}

impl fmt::Display for ScaffoldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ScaffoldError::Kind(k) => write!(
                f,
                "unknown plugin kind \"{k}\"; use one of: tracker-store, lock-store, event-broker, nlu-connector, model-source"
            ),
            ScaffoldError::Name(why) => f.write_str(why),
            ScaffoldError::Exists(dir) => write!(
                f,
                "{} already exists; choose another name or --dir (nothing was written)",
                dir.display()
            ),
            ScaffoldError::PluginApi(why) => f.write_str(why),
            ScaffoldError::Io(why) => f.write_str(why),
        }
    }
}

impl std::error::Error for ScaffoldError {}

/// Checks a plugin name: what users write as `type:`, and part of the crate's name.
pub fn validate_name(name: &str) -> Result<(), ScaffoldError> {
    let bad = |why: &str| {
        Err(ScaffoldError::Name(format!(
            "invalid plugin name \"{name}\": {why}; a name matches [a-z][a-z0-9_]* (it is what `type:` names)"
        )))
    };
    let mut chars = name.chars();
    match chars.next() {
        None => return bad("it is empty"),
        Some(c) if !c.is_ascii_lowercase() => return bad("it must start with a letter a-z"),
        Some(_) => {}
    }
    if !chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_') {
        return bad("use only a-z, 0-9 and _");
    }
    if name.len() > 64 {
        return bad("it is longer than 64 characters");
    }
    if RESERVED.contains(&name) {
        return bad("a built-in has this name, so `type:` would never select the plugin");
    }
    Ok(())
}

fn template_for(kind: Kind) -> &'static str {
    match kind {
        Kind::TrackerStore => TRACKER_STORE,
        Kind::LockStore => LOCK_STORE,
        Kind::EventBroker => EVENT_BROKER,
        Kind::NluConnector => NLU_CONNECTOR,
        Kind::ModelSource => MODEL_SOURCE,
    }
}

fn kind_text(kind: Kind) -> &'static str {
    match kind {
        Kind::TrackerStore => "tracker store",
        Kind::LockStore => "lock store",
        Kind::EventBroker => "event broker",
        Kind::NluConnector => "NLU connector",
        Kind::ModelSource => "model source",
    }
}

fn yaml_example(kind: Kind, name: &str) -> String {
    let keys = match kind {
        Kind::TrackerStore => "  verbose: false",
        Kind::LockStore => "  lifetime_ms: 60000",
        Kind::EventBroker => "  capacity: 10000",
        Kind::NluConnector => {
            "  intents:\n    greet: [hello, hi, hey]\n    goodbye: [bye, goodbye]"
        }
        Kind::ModelSource => "  archive: models/current.tar.gz\n  poll_ms: 10000",
    };
    format!("{}:\n  type: {name}\n{keys}", kind.section())
}

fn plugin_test_section(kind: Kind, lib_file: &str) -> String {
    let config = match kind {
        Kind::TrackerStore => "{}",
        Kind::LockStore => "{\"lifetime_ms\": 60000}",
        _ => return String::new(),
    };
    format!(
        "\n## Check it against the contract\n\n\
         ```sh\n\
         colloquy plugin-test target/release/{lib_file} --kind {} --config '{config}'\n\
         ```\n\n\
         runs the contract suite the built-in stores pass (the same as `cargo test`) through the\n\
         real `.so`, and prints one line per check with what failed.\n",
        kind.cli_name()
    )
}

/// Quotes a path for a TOML basic string.
fn toml_string(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

fn render(template: &str, vars: &[(&str, &str)]) -> String {
    let mut out = template.to_string();
    for (key, value) in vars {
        out = out.replace(&format!("{{{{{key}}}}}"), value);
    }
    out
}

/// Reads `package.name` and `package.version` of a `Cargo.toml` (enough for our check).
fn package_of(manifest: &str) -> (Option<String>, Option<String>) {
    let mut in_package = false;
    let (mut name, mut version) = (None, None);
    for line in manifest.lines().map(str::trim) {
        if line.starts_with('[') {
            in_package = line == "[package]";
            continue;
        }
        if !in_package {
            continue;
        }
        let value = |l: &str| {
            l.split_once('=')
                .map(|(_, v)| v.trim().trim_matches('"').to_string())
        };
        if line.starts_with("name") && line[4..].trim_start().starts_with('=') {
            name = value(line);
        } else if line.starts_with("version") && line[7..].trim_start().starts_with('=') {
            version = value(line);
        }
    }
    (name, version)
}

/// Checks that `path` holds the plugin API this host speaks; returns it made absolute.
fn check_plugin_api(path: &Path) -> Result<PathBuf, ScaffoldError> {
    let hint = "pass --plugin-api-path with the `plugin-api` directory of the Colloquy sources this colloquy was built from";
    let manifest_path = path.join("Cargo.toml");
    let manifest = std::fs::read_to_string(&manifest_path).map_err(|e| {
        ScaffoldError::PluginApi(format!(
            "cannot read {}: {e}; {hint}",
            manifest_path.display()
        ))
    })?;
    let (name, version) = package_of(&manifest);
    if name.as_deref() != Some("colloquy-plugin-api") {
        return Err(ScaffoldError::PluginApi(format!(
            "{} is not the colloquy-plugin-api crate; {hint}",
            path.display()
        )));
    }
    let version = version.unwrap_or_default();
    let major_minor = |v: &str| v.split('.').take(2).collect::<Vec<_>>().join(".");
    if major_minor(&version) != major_minor(CONTRACT_VERSION) {
        return Err(ScaffoldError::PluginApi(format!(
            "{} is plugin API {version}, but this colloquy speaks plugin API {CONTRACT_VERSION}: \
             a plugin built against it would be refused; {hint}",
            path.display()
        )));
    }
    path.canonicalize()
        .map_err(|e| ScaffoldError::PluginApi(format!("{}: {e}", path.display())))
}

/// What `new-plugin` created.
#[derive(Debug)]
pub struct Scaffolded {
    pub dir: PathBuf,
    pub lib_file: String,
    pub kind: Kind,
    pub name: String,
}

impl Scaffolded {
    /// The next steps, printed after generation.
    pub fn next_steps(&self) -> String {
        let dir = self.dir.display();
        let mut out = format!(
            "Created the {} plugin \"{}\" in {dir}\n\nNext:\n  cd {dir}\n  cargo build --release\n  mkdir -p plugins && cp target/release/{} plugins/    # or any --plugin-dir\n",
            kind_text(self.kind),
            self.name,
            self.lib_file,
        );
        if matches!(self.kind, Kind::TrackerStore | Kind::LockStore) {
            out.push_str(&format!(
                "  colloquy plugin-test target/release/{} --kind {}\n",
                self.lib_file,
                self.kind.cli_name()
            ));
        }
        out.push_str(&format!(
            "and select it in the endpoints YAML:\n  {}:\n    type: {}\nSee README.md there.\n",
            self.kind.section(),
            self.name
        ));
        out
    }
}

/// Creates the plugin crate `<dir>/<name>`. Nothing is written when a check fails, and an
/// existing directory is never touched.
pub fn new_plugin(args: &NewPluginArgs) -> Result<Scaffolded, ScaffoldError> {
    let kind = Kind::from_cli(&args.kind).ok_or_else(|| ScaffoldError::Kind(args.kind.clone()))?;
    let name = args.name.as_str();
    validate_name(name)?;
    let api_path = args
        .plugin_api_path
        .clone()
        .unwrap_or_else(default_plugin_api_path);
    let api_path = check_plugin_api(&api_path)?;
    let parent = args.dir.clone().unwrap_or_else(|| PathBuf::from("."));
    let dir = parent.join(name);
    if dir.exists() {
        return Err(ScaffoldError::Exists(dir));
    }
    let package = format!("colloquy-plugin-{}", name.replace('_', "-"));
    let lib_file = format!("libcolloquy_plugin_{name}.so");
    let api_path_text = api_path.display().to_string();
    let toml_path = toml_string(&api_path_text);
    let yaml = yaml_example(kind, name);
    let plugin_test = plugin_test_section(kind, &lib_file);
    let test_note = if plugin_test.is_empty() {
        ""
    } else {
        ", including the contract suite that `colloquy plugin-test` runs"
    };
    let vars: [(&str, &str); 11] = [
        ("name", name),
        ("package", &package),
        ("kind", kind.cli_name()),
        ("kind_text", kind_text(kind)),
        ("section", kind.section()),
        ("lib_file", &lib_file),
        ("plugin_api_path", &toml_path),
        ("api_version", CONTRACT_VERSION),
        ("yaml_example", &yaml),
        ("plugin_test", &plugin_test),
        ("test_note", test_note),
    ];
    let files = [
        ("Cargo.toml", render(CARGO_TOML, &vars)),
        ("README.md", render(README, &vars)),
        (".gitignore", render(GITIGNORE, &vars)),
        ("src/lib.rs", render(template_for(kind), &vars)),
    ];
    let io = |what: &Path, e: std::io::Error| ScaffoldError::Io(format!("{}: {e}", what.display()));
    std::fs::create_dir_all(&parent).map_err(|e| io(&parent, e))?;
    // `create_dir` (not `_all`) fails if someone created the directory in the meantime.
    std::fs::create_dir(&dir).map_err(|e| match e.kind() {
        std::io::ErrorKind::AlreadyExists => ScaffoldError::Exists(dir.clone()),
        _ => io(&dir, e),
    })?;
    std::fs::create_dir(dir.join("src")).map_err(|e| io(&dir, e))?;
    for (rel, content) in files {
        let path = dir.join(rel);
        std::fs::write(&path, content).map_err(|e| io(&path, e))?;
    }
    Ok(Scaffolded {
        dir,
        lib_file,
        kind,
        name: name.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(kind: &str, name: &str, dir: &Path) -> NewPluginArgs {
        NewPluginArgs {
            kind: kind.into(),
            name: name.into(),
            dir: Some(dir.to_path_buf()),
            plugin_api_path: None,
        }
    }

    #[test]
    fn names_are_checked() {
        for ok in ["my_store", "s3", "a"] {
            assert!(validate_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", "My", "1x", "my-store", "_x", "in_memory", "a b", "é"] {
            assert!(validate_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn every_kind_renders_without_leftover_placeholders() {
        let tmp = tempfile::tempdir().unwrap();
        let leftover = regex::Regex::new(r"\{\{[a-z_]+\}\}").unwrap();
        for kind in Kind::ALL {
            let name = format!("p_{}", kind.section());
            let made = new_plugin(&args(kind.cli_name(), &name, tmp.path())).unwrap();
            for rel in ["Cargo.toml", "README.md", ".gitignore", "src/lib.rs"] {
                let text = std::fs::read_to_string(made.dir.join(rel)).unwrap();
                assert!(!leftover.is_match(&text), "{rel} of {name}: {text}");
                assert!(!text.contains("TODO"), "{rel} of {name}");
            }
            let lib = std::fs::read_to_string(made.dir.join("src/lib.rs")).unwrap();
            assert!(lib.contains(&format!("name: \"{name}\"")));
            let toml = std::fs::read_to_string(made.dir.join("Cargo.toml")).unwrap();
            assert!(toml.contains("[workspace]") && toml.contains("cdylib"));
            assert!(toml.contains("panic = \"unwind\""));
        }
    }

    #[test]
    fn an_existing_directory_is_never_touched() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir(tmp.path().join("taken")).unwrap();
        std::fs::write(tmp.path().join("taken/keep"), "mine").unwrap();
        let err = new_plugin(&args("tracker-store", "taken", tmp.path())).unwrap_err();
        assert!(matches!(err, ScaffoldError::Exists(_)), "{err}");
        assert_eq!(
            std::fs::read_to_string(tmp.path().join("taken/keep")).unwrap(),
            "mine"
        );
    }

    #[test]
    fn a_wrong_plugin_api_path_is_explained() {
        let tmp = tempfile::tempdir().unwrap();
        let mut a = args("tracker-store", "x", tmp.path());
        a.plugin_api_path = Some(tmp.path().to_path_buf());
        let err = new_plugin(&a).unwrap_err().to_string();
        assert!(err.contains("--plugin-api-path"), "{err}");
        assert!(!tmp.path().join("x").exists());
        let err = new_plugin(&args("broker", "x", tmp.path()))
            .unwrap_err()
            .to_string();
        assert!(err.contains("tracker-store"), "{err}");
    }
}
