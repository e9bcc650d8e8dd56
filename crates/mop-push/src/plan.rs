//! Building the role plan one host receives: the role's resources and handlers, its prepared
//! templates and files, and the host's variables.

use mop_policy::Role;
use mop_protocol::{Mode, RolePlan};
use serde_json::{json, Map, Value};

use crate::prepare::PreparedRole;

/// Options that are the same for every host of a run.
#[derive(Debug, Clone, Copy)]
pub struct PlanOptions {
    pub mode: Mode,
    pub diff: bool,
}

/// The plan for one role on one host. `vars` are the host's resolved variables (inventory,
/// policy and role defaults, `-e`); `host` is added here.
pub fn role_plan(
    role: &Role,
    prepared: &PreparedRole,
    host_name: &str,
    host_groups: &[String],
    vars: impl IntoIterator<Item = (String, Value)>,
    remote_log: bool,
    options: PlanOptions,
) -> RolePlan {
    // Secrets never leave the controller, even to the host they belong to: sudo's password
    // reaches the host on sudo's stdin only.
    let mut plan_vars: Map<String, Value> = vars
        .into_iter()
        .filter(|(name, _)| !mop_inventory::is_secret_var(name))
        .collect();
    plan_vars.insert(
        "host".to_string(),
        json!({ "name": host_name, "groups": host_groups }),
    );
    RolePlan {
        role: role.name.clone(),
        mode: options.mode,
        diff: options.diff,
        vars: plan_vars,
        resources: role.resources.clone(),
        handlers: role.handlers.clone(),
        templates: prepared.templates.clone(),
        files: prepared.files.clone(),
        trees: prepared.trees.clone(),
        remote_log,
    }
}

/// Layers variable maps, later ones winning.
pub fn merge_vars<'a>(
    layers: impl IntoIterator<Item = &'a Map<String, Value>>,
) -> Map<String, Value> {
    let mut merged = Map::new();
    for layer in layers {
        for (name, value) in layer {
            merged.insert(name.clone(), value.clone());
        }
    }
    merged
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn later_layers_win_and_secrets_stay_home() {
        let policy: Map<String, Value> =
            serde_json::from_str(r#"{"a": 1, "b": 1}"#).expect("valid json");
        let role: Map<String, Value> = serde_json::from_str(r#"{"b": 2}"#).expect("valid json");
        let merged = merge_vars([&policy, &role]);
        assert_eq!(merged["a"], json!(1));
        assert_eq!(merged["b"], json!(2));

        let role = mop_policy::Policy::from_str(
            "[[roles]]\nname = \"r\"\n[[roles.resources]]\ntype = \"echo\"\nmsg = \"hi\"\n",
            std::path::Path::new("site.toml"),
        )
        .expect("valid policy")
        .roles
        .remove(0);
        let vars = vec![
            ("mop_sudo_password".to_string(), json!("secret")),
            ("mop_ssh_password".to_string(), json!("secret")),
            ("app".to_string(), json!("x")),
        ];
        let plan = role_plan(
            &role,
            &PreparedRole::default(),
            "web1",
            &["all".to_string()],
            vars,
            false,
            PlanOptions {
                mode: Mode::Check,
                diff: false,
            },
        );
        assert!(!plan.vars.contains_key("mop_sudo_password"));
        assert!(!plan.vars.contains_key("mop_ssh_password"));
        assert_eq!(plan.vars["host"]["name"], json!("web1"));
        assert_eq!(plan.vars["app"], json!("x"));
    }
}
