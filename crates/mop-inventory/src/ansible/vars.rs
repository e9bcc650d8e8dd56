//! Ansible's `ansible_*` connection variables and what they become in mop: one table drives the
//! translation, the errors and the reference docs.

use serde_json::Value;

use crate::inventory::{VarSetting, VarTable};
use crate::magic::{self, MagicKind, MagicVariable, TextOrigin};
use crate::value::{check_var_name, Problem};

use super::Var;

/// What mop does with one Ansible variable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Meaning {
    /// Becomes this magic variable, its value checked by the magic variable's grammar.
    Magic(&'static str),
    /// Only these values are accepted (they change nothing in mop); any other is an error.
    OnlyValues(&'static [&'static str], &'static str),
    /// Has no meaning in mop: dropped, with a warning naming file and host.
    Ignored,
}

/// One row of the mapping: the Ansible names (aliases first-to-last as Ansible lists them) and
/// what they mean to mop.
pub(crate) struct AnsibleVariable {
    pub(crate) names: &'static [&'static str],
    pub(crate) meaning: Meaning,
}

const fn row(names: &'static [&'static str], meaning: Meaning) -> AnsibleVariable {
    AnsibleVariable { names, meaning }
}

/// Every `ansible_*` variable mop reads from an Ansible inventory. Any other `ansible_*` name is
/// an error: a connection setting mop silently dropped could send a run somewhere else.
pub(crate) const ANSIBLE_VARIABLES: &[AnsibleVariable] = &[
    row(
        &["ansible_host", "ansible_ssh_host"],
        Meaning::Magic("mop_host"),
    ),
    row(
        &["ansible_port", "ansible_ssh_port"],
        Meaning::Magic("mop_port"),
    ),
    row(
        &["ansible_user", "ansible_ssh_user"],
        Meaning::Magic("mop_ssh_username"),
    ),
    row(
        &[
            "ansible_password",
            "ansible_ssh_pass",
            "ansible_ssh_password",
        ],
        Meaning::Magic("mop_ssh_password"),
    ),
    row(
        &["ansible_ssh_private_key_file", "ansible_private_key_file"],
        Meaning::Magic("mop_ssh_key"),
    ),
    row(
        &["ansible_become", "ansible_sudo"],
        Meaning::Magic("mop_sudo"),
    ),
    row(
        &["ansible_become_user", "ansible_sudo_user"],
        Meaning::Magic("mop_sudo_username"),
    ),
    row(
        &[
            "ansible_become_password",
            "ansible_become_pass",
            "ansible_sudo_password",
            "ansible_sudo_pass",
        ],
        Meaning::Magic("mop_sudo_password"),
    ),
    row(
        &["ansible_host_key_checking", "ansible_ssh_host_key_checking"],
        Meaning::Magic("mop_check_host_keys"),
    ),
    row(
        &["ansible_timeout", "ansible_ssh_timeout"],
        Meaning::Magic("mop_connect_timeout"),
    ),
    row(
        &["ansible_connection"],
        Meaning::OnlyValues(
            &["ssh", "smart", "paramiko", "paramiko_ssh"],
            "mop reaches every host over SSH; for the controller itself use `mop local`, or \
             run sshd there and set `ansible_host=127.0.0.1`",
        ),
    ),
    row(
        &["ansible_become_method"],
        Meaning::Magic("mop_become_method"),
    ),
    row(
        &["ansible_shell_type"],
        Meaning::OnlyValues(&["sh"], "mop's agent needs a POSIX `sh` on the host"),
    ),
    row(
        &[
            "ansible_python_interpreter",
            "ansible_pipelining",
            "ansible_ssh_pipelining",
            "ansible_ssh_retries",
            "ansible_shell_executable",
        ],
        Meaning::Ignored,
    ),
];

fn lookup(name: &str) -> Option<&'static AnsibleVariable> {
    ANSIBLE_VARIABLES
        .iter()
        .find(|variable| variable.names.contains(&name))
}

/// Ansible's `boolean()`: the spellings YAML 1.1 and INI files use for true and false.
fn ansible_bool(text: &str) -> Option<bool> {
    match text.to_ascii_lowercase().as_str() {
        "true" | "yes" | "on" | "y" | "t" | "1" => Some(true),
        "false" | "no" | "off" | "n" | "f" | "0" => Some(false),
        _ => None,
    }
}

/// The value of a magic variable set in an Ansible inventory. Ansible is lenient about types
/// (`ansible_port: "22"`, `ansible_become: yes`), so text is converted as shorthand is; every
/// value still passes the magic variable's grammar.
fn magic_value(var: &MagicVariable, value: &Value) -> Result<Value, Problem> {
    let as_bool = |value: &Value| match value {
        Value::Bool(flag) => Some(*flag),
        Value::String(text) => ansible_bool(text),
        Value::Number(number) => number.as_u64().and_then(|n| ansible_bool(&n.to_string())),
        _ => None,
    };
    match var.kind {
        MagicKind::Bool => match as_bool(value) {
            Some(flag) => Ok(Value::Bool(flag)),
            None => magic::validate_typed(var, value),
        },
        // Ansible's `host_key_checking` is a boolean; mop's `strict`/`off` are its two ends.
        MagicKind::HostKeyPolicy if !matches!(value, Value::String(text) if text.contains('-')) => {
            match as_bool(value) {
                Some(true) => Ok(Value::from("strict")),
                Some(false) => Ok(Value::from("off")),
                None => magic::validate_typed(var, value),
            }
        }
        _ => match value {
            Value::String(text) => magic::coerce_text(var, text, TextOrigin::Ansible),
            Value::Number(number) if !var.secret => {
                magic::coerce_text(var, &number.to_string(), TextOrigin::Ansible)
            }
            other => magic::validate_typed(var, other),
        },
    }
}

/// A problem with one variable, at its place.
pub(crate) struct VarProblem {
    pub(crate) var_location: crate::Location,
    pub(crate) problem: Problem,
}

/// Translates the variables of one scope (a group's vars, a host line) into mop's: `ansible_*`
/// names into magic variables, every value checked. Returns the table, the problems (all of
/// them) and the warnings. `scope` names the group or host in messages.
pub(crate) fn translate(scope: &str, vars: &[Var]) -> (VarTable, Vec<VarProblem>, Vec<String>) {
    let mut table = VarTable::default();
    // The name each mop variable was set under, to name both when two set the same one.
    let mut set_as: Vec<(String, String)> = Vec::new();
    let mut problems = Vec::new();
    let mut warnings = Vec::new();
    for var in vars {
        let fail = |problem: Problem| VarProblem {
            var_location: var.location.clone(),
            problem: Problem {
                message: format!("{scope}: {}", problem.message),
                hint: problem.hint,
            },
        };
        if let Err(problem) = check_var_name(&var.name) {
            problems.push(fail(problem));
            continue;
        }
        let (mop_name, value) = if var.name.starts_with("ansible_") {
            let Some(variable) = lookup(&var.name) else {
                problems.push(fail(Problem::with_hint(
                    format!("Ansible variable `{}` is not supported by mop", var.name),
                    "remove it; the Ansible variables mop reads are listed in \
                     docs/reference/inventory.md (SSH options belong in ~/.ssh/config, which \
                     mop honours)",
                )));
                continue;
            };
            match variable.meaning {
                Meaning::Magic(mop_name) => {
                    let magic_var = magic::magic_variable(mop_name)
                        .expect("the Ansible table names magic variables only");
                    match magic_value(magic_var, &var.value) {
                        Ok(value) => (mop_name.to_string(), value),
                        Err(problem) => {
                            problems.push(fail(Problem {
                                message: format!("`{}`: {}", var.name, problem.message),
                                hint: problem.hint,
                            }));
                            continue;
                        }
                    }
                }
                Meaning::OnlyValues(accepted, hint) => {
                    let text = match &var.value {
                        Value::String(text) => text.clone(),
                        other => other.to_string(),
                    };
                    if !accepted.contains(&text.as_str()) {
                        problems.push(fail(Problem::with_hint(
                            format!(
                                "`{}={}` is not supported by mop (accepted: {})",
                                var.name,
                                text.escape_debug(),
                                accepted
                                    .iter()
                                    .map(|value| format!("`{value}`"))
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            ),
                            hint,
                        )));
                    }
                    continue;
                }
                Meaning::Ignored => {
                    warnings.push(format!(
                        "{}: {scope}: Ansible variable `{}` has no meaning in mop and is ignored",
                        var.location, var.name
                    ));
                    continue;
                }
            }
        } else {
            match magic::check_reserved(&var.name) {
                Ok(Some(magic_var)) => match magic_value(magic_var, &var.value) {
                    Ok(value) => (var.name.clone(), value),
                    Err(problem) => {
                        problems.push(fail(problem));
                        continue;
                    }
                },
                Ok(None) => (var.name.clone(), var.value.clone()),
                Err(problem) => {
                    problems.push(fail(problem));
                    continue;
                }
            }
        };
        if let Some((_, first_name)) = set_as.iter().find(|(name, _)| *name == mop_name) {
            let message = if *first_name == var.name {
                format!("`{}` is set twice", var.name)
            } else {
                format!("`{first_name}` and `{}` both set `{mop_name}`", var.name)
            };
            problems.push(fail(Problem::with_hint(
                message,
                "set each variable once per group or host",
            )));
            continue;
        }
        set_as.push((mop_name.clone(), var.name.clone()));
        table.0.insert(
            mop_name,
            VarSetting {
                value,
                location: var.location.clone(),
            },
        );
    }
    (table, problems, warnings)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The reference page's mapping table must say what the code does.
    #[test]
    fn reference_mapping_matches_the_code() {
        let doc = include_str!("../../../../docs/reference/inventory.md");
        for variable in ANSIBLE_VARIABLES {
            let names = variable
                .names
                .iter()
                .map(|name| format!("`{name}`"))
                .collect::<Vec<_>>()
                .join(", ");
            let meaning = match variable.meaning {
                Meaning::Magic(mop_name) => format!("`{mop_name}`"),
                Meaning::OnlyValues(values, _) => format!(
                    "accepted when {}, else an error",
                    values
                        .iter()
                        .map(|value| format!("`{value}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                Meaning::Ignored => "ignored, with a warning".to_string(),
            };
            let row = format!("| {names} | {meaning} |");
            assert!(
                doc.contains(&row),
                "docs/reference/inventory.md lacks the row\n{row}"
            );
        }
    }

    #[test]
    fn every_magic_target_exists() {
        for variable in ANSIBLE_VARIABLES {
            if let Meaning::Magic(name) = variable.meaning {
                assert!(magic::magic_variable(name).is_some(), "{name}");
            }
        }
    }
}
