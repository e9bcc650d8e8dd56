//! Resources that act on the run rather than the host: `echo`, `set`, `assert`, `fail`.

use minijinja::Value;
use mop_protocol::{AssertSpec, EchoSpec, FailSpec, SetSpec};

use crate::outcome::{Outcome, ResourceError};
use crate::template::{Engine, Scope};

/// Says its (already rendered) message; never a change.
pub fn echo(spec: &EchoSpec) -> Outcome {
    Outcome {
        message: Some(spec.msg.clone()),
        ..Outcome::unchanged()
    }
}

/// Renders each value (a lone `{{ expression }}` keeps its type) and sets it for the following
/// resources. Values are rendered against the scope as it was before this resource, so one
/// `set` cannot see its own variables.
pub fn set(spec: &SetSpec, engine: &Engine, scope: &mut Scope) -> Result<Outcome, ResourceError> {
    let context = scope.context();
    let mut rendered = Vec::with_capacity(spec.vars.len());
    for (name, value) in &spec.vars {
        let value = engine
            .render_native(&format!("field `vars.{name}`"), value, &context)
            .map_err(ResourceError::new)?;
        rendered.push((name.clone(), value));
    }
    let mut outcome = Outcome::unchanged();
    let names: Vec<&str> = rendered.iter().map(|(name, _)| name.as_str()).collect();
    outcome.message = Some(format!("set {}", names.join(", ")));
    for (name, value) in rendered {
        scope.set(&name, Value::from_serialize(&value));
        outcome.extra.insert(name, value);
    }
    Ok(outcome)
}

/// Fails unless every `that` expression is true; the message is `msg` or the failing
/// expression.
pub fn assert(
    spec: &AssertSpec,
    engine: &Engine,
    scope: &mut Scope,
) -> Result<Outcome, ResourceError> {
    let context = scope.context();
    for expression in &spec.that {
        let holds = engine
            .is_true(
                &format!("assert expression `{expression}`"),
                expression,
                &context,
            )
            .map_err(ResourceError::new)?;
        if !holds {
            let message = match &spec.msg {
                Some(msg) => msg.clone(),
                None => format!("assertion failed: `{expression}`"),
            };
            return Err(ResourceError::new(message));
        }
    }
    Ok(Outcome {
        message: Some("all assertions passed".to_string()),
        ..Outcome::unchanged()
    })
}

/// Always fails with its message.
pub fn fail(spec: &FailSpec) -> ResourceError {
    ResourceError::new(spec.msg.clone())
}

#[cfg(test)]
mod tests {
    use mop_protocol::Facts;

    use super::*;

    #[test]
    fn set_renders_natively_and_assert_checks() {
        let engine = Engine::new();
        let facts = Facts {
            cpu_count: 4,
            ..Facts::default()
        };
        let mut scope = Scope::new(&facts);
        let vars = serde_json::json!({"workers": "{{ facts.cpu_count * 2 }}", "label": "w{{ facts.cpu_count }}"});
        let serde_json::Value::Object(vars) = vars else {
            panic!("object")
        };
        let outcome = set(&SetSpec { vars }, &engine, &mut scope).expect("set");
        assert!(!outcome.changed);
        assert_eq!(outcome.extra.get("workers"), Some(&serde_json::json!(8)));
        assert_eq!(outcome.extra.get("label"), Some(&serde_json::json!("w4")));

        let passing = AssertSpec {
            that: vec!["workers == 8".into(), "label is startingwith('w')".into()],
            msg: None,
        };
        assert!(assert(&passing, &engine, &mut scope).is_ok());
        let failing = AssertSpec {
            that: vec!["workers == 8".into(), "workers > 100".into()],
            msg: None,
        };
        assert_eq!(
            assert(&failing, &engine, &mut scope)
                .expect_err("fails")
                .message,
            "assertion failed: `workers > 100`"
        );
        let with_msg = AssertSpec {
            that: vec!["false".into()],
            msg: Some("too few workers".into()),
        };
        assert_eq!(
            assert(&with_msg, &engine, &mut scope)
                .expect_err("fails")
                .message,
            "too few workers"
        );
        let undefined = AssertSpec {
            that: vec!["nope > 1".into()],
            msg: None,
        };
        let err = assert(&undefined, &engine, &mut scope).expect_err("undefined");
        assert!(
            err.message.starts_with("assert expression `nope > 1`"),
            "{err}"
        );
    }

    #[test]
    fn echo_and_fail_carry_messages() {
        assert_eq!(
            echo(&EchoSpec { msg: "hi".into() }).message.as_deref(),
            Some("hi")
        );
        assert_eq!(fail(&FailSpec { msg: "stop".into() }).message, "stop");
    }
}
