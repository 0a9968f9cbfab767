//! Environment overrides (`MCBOT_SECTION__KEY=value`) and secrets from `NAME` or `NAME_FILE`.

use super::{ConfigError, Origins, keys};

const PREFIX: &str = "MCBOT_";
/// Variables with the prefix that are CLI, chart or test settings, not config keys.
const NOT_CONFIG: [&str; 6] =
    ["MCBOT_CONFIG", "MCBOT_PROFILE", "MCBOT_OUTPUT", "MCBOT_CHART_FONT", "MCBOT_SHARED_DIR", "MCBOT_TEST_PG_URL"];

/// Applies `MCBOT_SECTION__KEY=value` overrides: `__` separates levels, names are lower-cased (the name under a
/// map such as `sim.start_prices` keeps its case). The key table decides how the value is read: secrets, money,
/// text and paths are taken as the raw string whatever they look like (a secret of digits stays a string);
/// numbers and booleans as a TOML scalar. `MCBOT_X_FILE=path` reads the value from a file, for secrets mounted by
/// Docker or Kubernetes. Each value is checked against its range, and an override of a key that does not exist is
/// an error naming the variable.
pub(crate) fn apply_env(
    root: &mut toml::Value,
    vars: impl IntoIterator<Item = (String, String)>,
    origins: &mut Origins,
    secrets: &mut Vec<String>,
) -> Result<(), ConfigError> {
    let mut vars: Vec<(String, String)> =
        vars.into_iter().filter(|(k, _)| k.starts_with(PREFIX) && !NOT_CONFIG.contains(&k.as_str())).collect();
    vars.sort();
    for (var, raw) in vars {
        let (name, raw) = match var.strip_suffix("_FILE") {
            Some(base) => {
                let text = std::fs::read_to_string(&raw)
                    .map_err(|e| ConfigError::Env { var: var.clone(), message: format!("cannot read {raw}: {e}") })?;
                (base.to_owned(), text.trim_end().to_owned())
            }
            None => (var.clone(), raw),
        };
        let mut path: Vec<String> = name[PREFIX.len()..].split("__").map(str::to_lowercase).collect();
        let spec = keys::spec(&path.join("."));
        if spec.is_some_and(|s| keys::SYMBOL_MAPS.contains(&s.key))
            && let (Some(last), Some(original)) = (path.last_mut(), name.rsplit("__").next())
        {
            *last = original.to_owned();
        }
        let key = path.join(".");
        let value = match spec {
            Some(s) if s.kind == keys::Kind::Secret => {
                secrets.push(raw.clone());
                toml::Value::String(raw)
            }
            Some(s) if s.kind.is_raw_string() => toml::Value::String(raw),
            _ => parse_scalar(&raw),
        };
        let origin = format!("environment variable {var}");
        if let Some(s) = spec {
            s.check(&value).map_err(|message| ConfigError::Invalid {
                key: key.clone(),
                message,
                origin: format!(" ({origin})"),
            })?;
        }
        set(root, &path, value).map_err(|message| ConfigError::Env { var: var.clone(), message })?;
        origins.insert(key, origin);
    }
    Ok(())
}

/// Reads a secret from `NAME`, or from the file named by `NAME_FILE`.
pub fn secret_from_env(name: &str) -> Result<Option<String>, ConfigError> {
    if let Ok(v) = std::env::var(name) {
        return Ok(Some(v));
    }
    let file_var = format!("{name}_FILE");
    match std::env::var(&file_var) {
        Ok(path) => std::fs::read_to_string(&path)
            .map(|s| Some(s.trim_end().to_owned()))
            .map_err(|e| ConfigError::Env { var: file_var, message: format!("cannot read {path}: {e}") }),
        Err(_) => Ok(None),
    }
}

fn parse_scalar(raw: &str) -> toml::Value {
    let doc = format!("v = {raw}");
    match toml::from_str::<toml::Table>(&doc) {
        Ok(mut t) => t.remove("v").unwrap_or_else(|| toml::Value::String(raw.to_owned())),
        Err(_) => toml::Value::String(raw.to_owned()),
    }
}

fn set(root: &mut toml::Value, path: &[String], value: toml::Value) -> Result<(), String> {
    let Some((last, parents)) = path.split_last() else { return Err("empty key".into()) };
    let mut node = &mut *root;
    for p in parents {
        let table = node.as_table_mut().ok_or_else(|| format!("{p} is not a section"))?;
        node = table.entry(p.clone()).or_insert_with(|| toml::Value::Table(toml::Table::new()));
    }
    let table = node.as_table_mut().ok_or_else(|| format!("{} is not a section", parents.join(".")))?;
    table.insert(last.clone(), value);
    // Validate the key exists by deserialising the document; the caller reports the variable.
    super::Config::deserialize_value(root).map_err(|e| format!("{} ({})", e, path.join(".")))
}
