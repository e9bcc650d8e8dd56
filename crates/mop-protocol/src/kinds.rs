//! One description per resource type: its name, its main argument and how each of its fields
//! is treated (rendered by the agent, a literal choice, an expression...).
//!
//! This table is the one place a resource type is spelled out besides its spec struct in
//! [`crate::resource`]. The policy validator (which strings are templates, literal choices,
//! labels), the agent's renderer (tested against it) and `docs/reference/policy.md` (tested
//! against it) all follow it. [`ResourceSpec::kind`] is an exhaustive `match`, so a new enum
//! variant does not compile without an entry; the tests below hold every entry's field list
//! and choices equal to what serde accepts.

use crate::resource::ResourceSpec;

/// How the strings of one field are treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldKind {
    /// A string, or a list or table of strings, rendered by the agent before the resource runs.
    Template,
    /// One of these values, or a template the agent renders that must then be one of them;
    /// checked before any host is contacted when it is written without template syntax.
    TemplateChoice(&'static [&'static str]),
    /// A string never rendered: a mode, a name, a handler name or a variable name.
    Literal,
    /// A minijinja expression evaluated by the agent.
    Expression,
    /// An expression evaluated after the resource ran, with `result` in scope.
    ResultExpression,
    /// A table whose string values (at any depth) are templates rendered by the resource
    /// itself, so that the other values keep their types (`set.vars`).
    RenderedByResource,
    /// A key into the role plan's file lists (`template`, `source`): the files must be known
    /// before any host is contacted, so it is literal, except in a loop written as a list,
    /// where it may read the loop's own names: the controller renders it for every item, and
    /// the agent renders it the same way to find the item's file.
    FileKey,
    /// A boolean or a number: no strings in it.
    Scalar,
    /// `loop`: a list written in the policy, or a template expression (`"{{ users }}"`)
    /// evaluated by the agent.
    Loop,
}

impl FieldKind {
    /// Whether the agent renders the field's strings before the resource runs.
    pub fn is_rendered_before_run(self) -> bool {
        matches!(
            self,
            FieldKind::Template | FieldKind::TemplateChoice(_) | FieldKind::FileKey
        )
    }
}

/// One field of a resource table, as the policy writes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FieldDescription {
    pub name: &'static str,
    /// Other spellings serde accepts for the same field (`package` for `packages`).
    pub aliases: &'static [&'static str],
    pub kind: FieldKind,
}

impl FieldDescription {
    /// The name and its aliases.
    pub fn spellings(&self) -> impl Iterator<Item = &'static str> + '_ {
        std::iter::once(self.name).chain(self.aliases.iter().copied())
    }
}

/// One resource type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResourceKind {
    /// The `type` value.
    pub name: &'static str,
    /// The field that labels the resource in output (`file /etc/motd`); see
    /// [`ResourceSpec::main_argument`].
    pub main_field: &'static str,
    /// Every type-specific field, in documentation order.
    pub fields: &'static [FieldDescription],
}

impl ResourceKind {
    /// The field written as `key` (its name or an alias).
    pub fn field(&self, key: &str) -> Option<&'static FieldDescription> {
        self.fields
            .iter()
            .find(|field| field.spellings().any(|spelling| spelling == key))
    }
}

/// Package managers the agent knows (`package.manager`).
pub const PACKAGE_MANAGERS: &[&str] = &["apt", "dnf", "yum", "apk", "pacman", "zypper"];

/// Package managers whose repositories `repository` writes (`repository.manager`).
pub const REPOSITORY_MANAGERS: &[&str] = &["apt", "dnf", "yum"];

/// Service managers the agent knows (`service.manager`).
pub const SERVICE_MANAGERS: &[&str] = &["systemd", "openrc", "sysvinit"];

const PRESENCE: &[&str] = &["present", "absent"];

/// Fields every resource type accepts (see [`crate::Resource`]), and `type` itself.
pub const COMMON_FIELDS: &[FieldDescription] = &[
    field("type", FieldKind::Literal),
    field("name", FieldKind::Literal),
    field("when", FieldKind::Expression),
    field("notify", FieldKind::Literal),
    field("register", FieldKind::Literal),
    field("ignore_errors", FieldKind::Scalar),
    field("changed_when", FieldKind::ResultExpression),
    field("failed_when", FieldKind::ResultExpression),
    field("tags", FieldKind::Literal),
    field("loop", FieldKind::Loop),
    field("loop_var", FieldKind::Literal),
    field("label", FieldKind::Template),
];

const fn field(name: &'static str, kind: FieldKind) -> FieldDescription {
    FieldDescription {
        name,
        aliases: &[],
        kind,
    }
}

use FieldKind::{Expression, Literal, RenderedByResource, Scalar, Template, TemplateChoice};

const FILE: ResourceKind = ResourceKind {
    name: "file",
    main_field: "path",
    fields: &[
        field("path", Template),
        field("content", Template),
        field("template", FieldKind::FileKey),
        field("source", FieldKind::FileKey),
        field("owner", Template),
        field("group", Template),
        field("mode", Literal),
        field("state", TemplateChoice(PRESENCE)),
    ],
};

const DIRECTORY: ResourceKind = ResourceKind {
    name: "directory",
    main_field: "path",
    fields: &[
        field("path", Template),
        field("owner", Template),
        field("group", Template),
        field("mode", Literal),
        field("state", TemplateChoice(PRESENCE)),
        field("parents", Scalar),
        field("recursive", Scalar),
    ],
};

const LINK: ResourceKind = ResourceKind {
    name: "link",
    main_field: "path",
    fields: &[
        field("path", Template),
        field("target", Template),
        field("state", TemplateChoice(PRESENCE)),
        field("force", Scalar),
    ],
};

const LINE: ResourceKind = ResourceKind {
    name: "line",
    main_field: "path",
    fields: &[
        field("path", Template),
        field("line", Template),
        field("regexp", Template),
        field("state", TemplateChoice(PRESENCE)),
        field("create", Scalar),
    ],
};

const BLOCK: ResourceKind = ResourceKind {
    name: "block",
    main_field: "path",
    fields: &[
        field("path", Template),
        field("block", Template),
        field("marker", Template),
        field("insert_after", Template),
        field("insert_before", Template),
        field("state", TemplateChoice(PRESENCE)),
        field("create", Scalar),
    ],
};

const CRON: ResourceKind = ResourceKind {
    name: "cron",
    main_field: "cron",
    fields: &[
        field("cron", Template),
        field("user", Template),
        field("command", Template),
        field("minute", Template),
        field("hour", Template),
        field("day", Template),
        field("month", Template),
        field("weekday", Template),
        field("special", Template),
        field("env", Template),
        field("state", TemplateChoice(PRESENCE)),
    ],
};

const AUTHORIZED_KEY: ResourceKind = ResourceKind {
    name: "authorized_key",
    main_field: "user",
    fields: &[
        field("user", Template),
        FieldDescription {
            name: "keys",
            aliases: &["key"],
            kind: Template,
        },
        field("state", TemplateChoice(PRESENCE)),
        field("exclusive", Scalar),
    ],
};

const COMMAND_FIELDS: &[FieldDescription] = &[
    field("cmd", Template),
    field("creates", Template),
    field("removes", Template),
    field("unless", Template),
    field("onlyif", Template),
    field("cwd", Template),
    field("env", Template),
    field("timeout", Scalar),
    field("read_only", Scalar),
];

const SHELL: ResourceKind = ResourceKind {
    name: "shell",
    main_field: "cmd",
    fields: COMMAND_FIELDS,
};

const COMMAND: ResourceKind = ResourceKind {
    name: "command",
    main_field: "cmd",
    fields: COMMAND_FIELDS,
};

const PACKAGE: ResourceKind = ResourceKind {
    name: "package",
    main_field: "packages",
    fields: &[
        FieldDescription {
            name: "packages",
            aliases: &["package"],
            kind: Template,
        },
        field("state", TemplateChoice(&["present", "absent", "latest"])),
        field("manager", TemplateChoice(PACKAGE_MANAGERS)),
        field("update_cache", Scalar),
    ],
};

const DOWNLOAD: ResourceKind = ResourceKind {
    name: "download",
    main_field: "dest",
    fields: &[
        field("url", Template),
        field("dest", Template),
        field("sha256", Template),
        field("owner", Template),
        field("group", Template),
        field("mode", Literal),
    ],
};

const GIT: ResourceKind = ResourceKind {
    name: "git",
    main_field: "dest",
    fields: &[
        field("repo", Template),
        field("dest", Template),
        field("version", Template),
    ],
};

const REPOSITORY: ResourceKind = ResourceKind {
    name: "repository",
    main_field: "repository",
    fields: &[
        field("repository", Template),
        field("url", Template),
        field("suites", Template),
        field("components", Template),
        field("key", Template),
        field("manager", TemplateChoice(REPOSITORY_MANAGERS)),
        field("trusted", Scalar),
        field("update_cache", Scalar),
        field("state", TemplateChoice(PRESENCE)),
    ],
};

const SERVICE: ResourceKind = ResourceKind {
    name: "service",
    main_field: "service",
    fields: &[
        field("service", Template),
        field(
            "state",
            TemplateChoice(&["started", "stopped", "restarted", "reloaded"]),
        ),
        field("enabled", TemplateChoice(&["true", "false"])),
        field("manager", TemplateChoice(SERVICE_MANAGERS)),
        field("daemon_reload", Scalar),
    ],
};

const SYSCTL: ResourceKind = ResourceKind {
    name: "sysctl",
    main_field: "sysctl",
    fields: &[
        field("sysctl", Template),
        field("value", Template),
        field("state", TemplateChoice(PRESENCE)),
        field("file", Template),
    ],
};

const MOUNT: ResourceKind = ResourceKind {
    name: "mount",
    main_field: "path",
    fields: &[
        field("path", Template),
        field("src", Template),
        field("fstype", Template),
        field("opts", Template),
        field("dump", Scalar),
        field("passno", Scalar),
        field(
            "state",
            TemplateChoice(&["mounted", "unmounted", "present", "absent"]),
        ),
        field("fstab", Template),
    ],
};

const UNARCHIVE: ResourceKind = ResourceKind {
    name: "unarchive",
    main_field: "dest",
    fields: &[
        field("dest", Template),
        field("src", Template),
        field("source", FieldKind::FileKey),
        field(
            "format",
            TemplateChoice(&["tar", "tar.gz", "tar.xz", "zip"]),
        ),
        field("creates", Template),
    ],
};

const TREE: ResourceKind = ResourceKind {
    name: "tree",
    main_field: "path",
    fields: &[
        field("path", Template),
        field("source", FieldKind::FileKey),
        field("owner", Template),
        field("group", Template),
        field("mode", Literal),
        field("dir_mode", Literal),
        field("delete", Scalar),
        field("exclude", Literal),
    ],
};

const USER: ResourceKind = ResourceKind {
    name: "user",
    main_field: "user",
    fields: &[
        field("user", Template),
        field("uid", Scalar),
        field("group", Template),
        field("groups", Template),
        field("append", Scalar),
        field("home", Template),
        field("shell", Template),
        field("comment", Template),
        field("system", Scalar),
        field("create_home", Scalar),
        field("state", TemplateChoice(PRESENCE)),
    ],
};

const GROUP: ResourceKind = ResourceKind {
    name: "group",
    main_field: "group",
    fields: &[
        field("group", Template),
        field("gid", Scalar),
        field("system", Scalar),
        field("state", TemplateChoice(PRESENCE)),
    ],
};

const ECHO: ResourceKind = ResourceKind {
    name: "echo",
    main_field: "msg",
    fields: &[field("msg", Template)],
};

const SET: ResourceKind = ResourceKind {
    name: "set",
    main_field: "vars",
    fields: &[field("vars", RenderedByResource)],
};

const ASSERT: ResourceKind = ResourceKind {
    name: "assert",
    main_field: "that",
    fields: &[field("that", Expression), field("msg", Template)],
};

const FAIL: ResourceKind = ResourceKind {
    name: "fail",
    main_field: "msg",
    fields: &[field("msg", Template)],
};

/// Every resource type, in documentation order.
pub const RESOURCE_KINDS: &[ResourceKind] = &[
    FILE,
    DIRECTORY,
    LINK,
    LINE,
    BLOCK,
    CRON,
    AUTHORIZED_KEY,
    SHELL,
    COMMAND,
    PACKAGE,
    DOWNLOAD,
    GIT,
    REPOSITORY,
    SERVICE,
    SYSCTL,
    MOUNT,
    UNARCHIVE,
    TREE,
    USER,
    GROUP,
    ECHO,
    SET,
    ASSERT,
    FAIL,
];

/// The resource type named `name` (the `type` value).
pub fn resource_kind(name: &str) -> Option<&'static ResourceKind> {
    RESOURCE_KINDS.iter().find(|kind| kind.name == name)
}

/// Every resource type name, in documentation order.
pub fn resource_type_names() -> impl Iterator<Item = &'static str> + Clone {
    RESOURCE_KINDS.iter().map(|kind| kind.name)
}

impl ResourceSpec {
    /// The description of this spec's type. Exhaustive on purpose: a new variant does not
    /// compile until it has an entry in [`RESOURCE_KINDS`].
    pub fn kind(&self) -> &'static ResourceKind {
        match self {
            ResourceSpec::File(_) => &FILE,
            ResourceSpec::Directory(_) => &DIRECTORY,
            ResourceSpec::Link(_) => &LINK,
            ResourceSpec::Line(_) => &LINE,
            ResourceSpec::Block(_) => &BLOCK,
            ResourceSpec::Cron(_) => &CRON,
            ResourceSpec::AuthorizedKey(_) => &AUTHORIZED_KEY,
            ResourceSpec::Shell(_) => &SHELL,
            ResourceSpec::Command(_) => &COMMAND,
            ResourceSpec::Package(_) => &PACKAGE,
            ResourceSpec::Download(_) => &DOWNLOAD,
            ResourceSpec::Git(_) => &GIT,
            ResourceSpec::Repository(_) => &REPOSITORY,
            ResourceSpec::Service(_) => &SERVICE,
            ResourceSpec::Sysctl(_) => &SYSCTL,
            ResourceSpec::Mount(_) => &MOUNT,
            ResourceSpec::Unarchive(_) => &UNARCHIVE,
            ResourceSpec::Tree(_) => &TREE,
            ResourceSpec::User(_) => &USER,
            ResourceSpec::Group(_) => &GROUP,
            ResourceSpec::Echo(_) => &ECHO,
            ResourceSpec::Set(_) => &SET,
            ResourceSpec::Assert(_) => &ASSERT,
            ResourceSpec::Fail(_) => &FAIL,
        }
    }

    /// The `type` name.
    pub fn type_name(&self) -> &'static str {
        self.kind().name
    }
}

/// A resource of `kind` with every field set to a value of the right shape, strings holding
/// template syntax where the field is rendered. For tests on both sides of the wire (the
/// agent's renderer is held to the table with it); combinations the policy would refuse
/// (`content` with `source`) are fine here.
pub fn sample_resource_json(kind: &ResourceKind) -> serde_json::Value {
    let mut table = serde_json::Map::new();
    table.insert("type".into(), kind.name.into());
    for field in kind.fields {
        table.insert(field.name.into(), sample_value(kind, field));
    }
    serde_json::Value::Object(table)
}

fn sample_value(kind: &ResourceKind, field: &FieldDescription) -> serde_json::Value {
    use serde_json::json;
    let text = format!("{{{{ {} }}}}", field.name);
    match (kind.name, field.name, field.kind) {
        (_, "mode", _) => json!("0644"),
        (_, "dir_mode", _) => json!("0755"),
        (_, _, TemplateChoice(_) | Literal | FieldKind::FileKey) => json!(text),
        (_, "env", _) => json!({ "A": text }),
        (_, "packages" | "groups" | "keys" | "suites" | "components", _) => json!([text, "fixed"]),
        (_, "that", _) => json!(["true"]),
        (_, "vars", _) => json!({ "a": text }),
        (_, "uid" | "gid" | "timeout" | "dump" | "passno", Scalar) => json!(7),
        (_, _, Scalar) => json!(true),
        _ => json!(text),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::Resource;

    fn serde_error(json: serde_json::Value) -> String {
        match serde_json::from_value::<Resource>(json) {
            Ok(resource) => panic!("accepted {resource:?}"),
            Err(err) => err.to_string(),
        }
    }

    /// The backquoted names after "expected" in a serde message (`a`, `a` or `b`, one of ...).
    fn listed(message: &str) -> BTreeSet<String> {
        let (_, list) = message
            .split_once("expected ")
            .unwrap_or_else(|| panic!("no list in {message}"));
        list.split('`')
            .skip(1)
            .step_by(2)
            .map(str::to_string)
            .collect()
    }

    #[test]
    fn every_type_has_one_entry_and_samples_round_trip() {
        let names: BTreeSet<&str> = resource_type_names().collect();
        assert_eq!(names.len(), RESOURCE_KINDS.len(), "duplicate type name");
        for kind in RESOURCE_KINDS {
            let resource: Resource = serde_json::from_value(sample_resource_json(kind))
                .unwrap_or_else(|err| panic!("sample of `{}`: {err}", kind.name));
            assert_eq!(resource.spec.kind(), kind, "`{}` maps back", kind.name);
            assert!(kind.field(kind.main_field).is_some(), "`{}`", kind.name);
        }
        // The reverse direction: serde's own list of variants.
        let message = serde_error(serde_json::json!({"type": "nope"}));
        let serde_names: BTreeSet<String> = listed(&message);
        let table: BTreeSet<String> = names.iter().map(|name| name.to_string()).collect();
        assert_eq!(serde_names, table);
    }

    #[test]
    fn fields_are_exactly_what_serde_accepts() {
        for kind in RESOURCE_KINDS {
            let mut json = sample_resource_json(kind);
            json["not_a_field"] = 1.into();
            let accepted = listed(&serde_error(json));
            let described: BTreeSet<String> = kind
                .fields
                .iter()
                .flat_map(|field| field.spellings())
                .map(str::to_string)
                .collect();
            assert_eq!(accepted, described, "fields of `{}`", kind.name);
        }
    }

    #[test]
    fn choices_are_exactly_what_serde_accepts() {
        for kind in RESOURCE_KINDS {
            for field in kind.fields {
                let TemplateChoice(values) = field.kind else {
                    continue;
                };
                for value in values {
                    let mut json = sample_resource_json(kind);
                    json[field.name] = match *value {
                        "true" => true.into(),
                        "false" => false.into(),
                        value => value.into(),
                    };
                    serde_json::from_value::<Resource>(json)
                        .unwrap_or_else(|err| panic!("`{}.{}`: {err}", kind.name, field.name));
                }
                let mut json = sample_resource_json(kind);
                json[field.name] = "not-a-choice".into();
                // `manager` is a plain string to serde: the policy checks its literals.
                let Err(error) = serde_json::from_value::<Resource>(json) else {
                    assert_eq!(field.name, "manager", "`{}.{}`", kind.name, field.name);
                    continue;
                };
                let accepted = listed(&error.to_string());
                let described: BTreeSet<String> =
                    values.iter().map(|value| value.to_string()).collect();
                assert_eq!(accepted, described, "`{}.{}`", kind.name, field.name);
            }
        }
    }

    #[test]
    fn common_fields_are_the_resource_struct() {
        // A spec field named like a common one would be shadowed by the flattened struct.
        for kind in RESOURCE_KINDS {
            for field in kind.fields {
                assert!(
                    !COMMON_FIELDS.iter().any(|common| common.name == field.name),
                    "`{}.{}` shadows a common field",
                    kind.name,
                    field.name
                );
            }
        }
        let mut json = serde_json::json!({"type": "echo", "msg": "x"});
        for common in COMMON_FIELDS.iter().filter(|common| common.name != "type") {
            json[common.name] = match common.kind {
                Scalar => true.into(),
                _ => "x".into(),
            };
        }
        serde_json::from_value::<Resource>(json).expect("every common field is accepted");
    }
}
