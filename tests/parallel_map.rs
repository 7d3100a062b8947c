//! `parallel-map` as SPEC section 8 describes it, as a call and as a Rust
//! function.

use std::time::Duration;

use erlangen::call::{self, CallError};
use erlangen::examples::{parallel_map, register_functions};
use erlangen::{receive_timeout, spawn_with, Attach, SpawnOptions, Term};

fn read_vector(items: &[i64]) -> Term {
    Term::Vector(items.iter().map(|&i| Term::from(i)).collect())
}

fn call_term(args: Vec<Term>) -> Term {
    let mut items = vec![Term::symbol("parallel-map")];
    items.extend(args);
    Term::list(items)
}

#[test]
fn spec_walkthrough_as_a_monitored_call() {
    register_functions();
    let call = call_term(vec![
        Term::symbol("1+"),
        read_vector(&[2, 4, 6, 8, 10, 12, 14]),
        Term::keyword("level"),
        3.into(),
    ]);
    let agent = erlangen::spawn_call(&call, &SpawnOptions::new().attach(Attach::Monitor)).unwrap();
    let notice = receive_timeout(Duration::from_secs(10)).unwrap();
    assert_eq!(
        notice,
        Term::list(vec![
            agent.to_term(),
            Term::keyword("ok"),
            read_vector(&[3, 5, 7, 9, 11, 13, 15])
        ])
    );
    assert!(notice.to_string().ends_with(":OK #(3 5 7 9 11 13 15))"));
}

#[test]
fn qualified_name_and_default_level() {
    register_functions();
    let call = Term::list(vec![
        Term::Symbol(erlangen::Symbol::qualified(
            "erlangen.examples",
            "parallel-map",
        )),
        Term::symbol("1+"),
        read_vector(&[1, 2, 3]),
    ]);
    assert_eq!(call::apply(&call).unwrap(), read_vector(&[2, 3, 4]));
}

#[test]
fn empty_vector_gives_empty_vector() {
    register_functions();
    let call = call_term(vec![Term::symbol("1+"), Term::Vector(vec![])]);
    assert_eq!(call::apply(&call).unwrap(), Term::Vector(vec![]));
}

#[test]
fn level_larger_than_vector() {
    register_functions();
    let call = call_term(vec![
        Term::symbol("1+"),
        read_vector(&[1, 2]),
        Term::keyword("level"),
        50.into(),
    ]);
    assert_eq!(call::apply(&call).unwrap(), read_vector(&[2, 3]));
}

#[test]
fn failing_element_exits_with_the_workers_reason() {
    register_functions();
    // 1+ of a string fails in one worker; parallel-map passes that reason on.
    let call = call_term(vec![
        Term::symbol("1+"),
        Term::Vector(vec![1.into(), "two".into(), 3.into(), 4.into()]),
        Term::keyword("level"),
        2.into(),
    ]);
    let (function, args) = call::prepare(&call).unwrap();
    let agent = spawn_with(&SpawnOptions::new().attach(Attach::Monitor), move || {
        function(&args)
    })
    .unwrap();
    let notice = receive_timeout(Duration::from_secs(10)).unwrap();
    let expected_reason = Term::from("bad arguments to 1+: expected a number, got \"two\"");
    assert_eq!(
        notice,
        Term::dotted(
            vec![agent.to_term(), Term::keyword("exit")],
            expected_reason
        )
    );
}

#[test]
fn rust_closure_as_function() {
    let square = std::sync::Arc::new(|args: &[Term]| -> Result<Term, CallError> {
        let x = args[0].as_int().unwrap_or(0);
        Ok(Term::from(x * x))
    }) as call::Function;
    let input: Vec<Term> = (1..=10).map(Term::from).collect();
    let out = parallel_map(square, &input, 4).unwrap();
    assert_eq!(
        out,
        Term::Vector((1..=10).map(|i: i64| Term::from(i * i)).collect())
    );
}

#[test]
fn unknown_function_and_bad_arguments_are_errors() {
    register_functions();
    let unknown = Term::list(vec![Term::symbol("no-such-function-here"), 1.into()]);
    assert_eq!(
        call::prepare(&unknown).err(),
        Some(CallError::UnknownFunction("NO-SUCH-FUNCTION-HERE".into()))
    );
    let bad = call_term(vec![Term::symbol("1+"), 5.into()]);
    assert!(matches!(
        call::apply(&bad),
        Err(CallError::BadArguments { .. })
    ));
    let bad_level = call_term(vec![
        Term::symbol("1+"),
        read_vector(&[1]),
        Term::keyword("level"),
        0.into(),
    ]);
    assert!(call::apply(&bad_level).is_err());
}
