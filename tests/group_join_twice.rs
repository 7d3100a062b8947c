//! Joining a process group twice (issue 22 item 19): unlike OTP's `pg`,
//! where a process that joins twice is a member twice (and gets every
//! group message twice until it leaves twice), a group here is a set: the
//! second join changes nothing and one leave ends the membership (README,
//! "Where the building blocks differ from OTP"). This pins that choice.

use erlangen::node::groups;
use erlangen::{Agent, Term};

#[test]
fn joining_twice_is_joining_once() {
    let me = Agent::current();
    let group = "join-twice";
    groups::join(group, &me).unwrap();
    groups::join(group, &me).unwrap();
    assert_eq!(groups::members(group), vec![me.to_term()]);
    assert_eq!(groups::send_to_group(group, &Term::keyword("once")), 1);
    assert_eq!(
        erlangen::receive_timeout(std::time::Duration::ZERO),
        Ok(Term::keyword("once"))
    );
    groups::leave(group, &me).unwrap();
    assert!(groups::members(group).is_empty());
    assert!(groups::leave(group, &me).is_err());
}
