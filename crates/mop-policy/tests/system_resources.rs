//! `package`, `service`, `user` and `group`: the resources whose main field is not `name`
//! (the common `name` is every resource's label), and their checks.

use std::path::Path;

use mop_policy::{Policy, ResourceSpec};

fn errors_of(policy: &str) -> String {
    match Policy::from_str(policy, Path::new("site.toml")) {
        Ok(_) => panic!("policy loaded without errors:\n{policy}"),
        Err(errors) => errors.to_string(),
    }
}

#[test]
fn label_and_main_field_coexist() {
    let policy = Policy::from_str(
        r#"
[[roles]]
name = "web"

[[roles.resources]]
name = "web server installed"
type = "package"
packages = ["nginx", "curl"]

[[roles.resources]]
type = "package"
package = "git"

[[roles.resources]]
type = "service"
service = "nginx"
state = "started"

[[roles.resources]]
type = "group"
group = "web"

[[roles.resources]]
name = "the web account"
type = "user"
user = "web"
group = "web"
groups = ["adm"]

[[roles.handlers]]
name = "restart nginx"
type = "service"
service = "nginx"
state = "restarted"
"#,
        Path::new("site.toml"),
    )
    .unwrap_or_else(|errors| panic!("{errors}"));
    let role = &policy.roles[0];
    assert_eq!(
        role.resources[0].name.as_deref(),
        Some("web server installed")
    );
    match &role.resources[0].spec {
        ResourceSpec::Package(spec) => assert_eq!(spec.name, ["nginx", "curl"]),
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(role.resources[1].spec.main_argument(), "git");
    assert_eq!(role.resources[2].display_name(), "service nginx");
    assert_eq!(role.resources[3].display_name(), "group web");
    assert_eq!(role.resources[4].spec.main_argument(), "web");
    assert_eq!(role.handlers[0].name.as_deref(), Some("restart nginx"));
}

#[test]
fn system_resource_checks() {
    insta::assert_snapshot!(errors_of(
        r#"
[[roles]]
name = "web"

[[roles.resources]]
type = "package"
packages = ["nginx", ""]
manager = "aptitude"

[[roles.resources]]
type = "service"
service = "nginx"
manager = "systemd"

[[roles.resources]]
type = "service"
service = "nginx"
state = "runing"

[[roles.resources]]
type = "user"
user = "Deploy"
group = "1staff"
groups = ["ok", "not ok"]

[[roles.resources]]
type = "user"
user = "{{ account }}"

[[roles.resources]]
type = "group"
group = "a-very-long-group-name-that-goes-on"

[[roles.resources]]
type = "package"
name = "nginx"
"#
    ));
}
