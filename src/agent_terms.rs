//! Agent handles and targets to and from terms ([`crate::term::convert`]):
//! kept out of `term/`, which knows nothing of agents, and out of
//! `agent/`, which the conversions do not change.

use crate::agent::{target, Agent, Target};
use crate::term::{AgentRef, FromTerm, IntoTerm, Term, TermError};

impl IntoTerm for Agent {
    fn into_term(self) -> Term {
        self.to_term()
    }
}

impl IntoTerm for &Agent {
    fn into_term(self) -> Term {
        self.to_term()
    }
}

impl FromTerm for Agent {
    /// An agent term of this process whose agent has not exited. A reply
    /// address that may be on another node is an [`AgentRef`] or a
    /// [`Target`] instead.
    fn from_term(term: &Term) -> Result<Agent, TermError> {
        match term {
            // The table keeps an exiting agent until its notices are sent
            // (exit.rs), so a monitor can hear of the exit first: an agent
            // found there that has ended does not count.
            Term::Agent(AgentRef::Local(serial)) => target::by_serial(*serial)
                .filter(Agent::is_alive)
                .ok_or_else(|| {
                    TermError::new("an agent of this process that has not exited", term)
                }),
            _ => Err(TermError::new("an agent of this process", term)),
        }
    }
}

impl FromTerm for Target {
    /// An agent term, a `:NAME` keyword, or a string (a name, or an id
    /// `"host/node/aid"`), as [`crate::send`] takes them; whether it names
    /// a live agent is found out when it is used.
    fn from_term(term: &Term) -> Result<Target, TermError> {
        match term {
            Term::Agent(_) | Term::Keyword(_) => Ok(Target::Term(term.clone())),
            Term::Str(s) => Ok(Target::from(s.as_str())),
            _ => Err(TermError::new(
                "an agent, a :NAME keyword or a string naming one",
                term,
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::term::{read, AgentRef, IntoTerm, Term};
    use crate::{receive_timeout, spawn_with, Agent, Attach, SpawnOptions, Target};

    #[test]
    fn agents_both_ways() {
        let me = Agent::current();
        let (n, agent): (i64, Agent) = Term::list(vec![7.into(), me.to_term()]).decode().unwrap();
        assert_eq!((n, agent), (7, me.clone()));
        assert_eq!(
            (1i64, &me).into_term(),
            Term::list(vec![1.into(), me.to_term()])
        );
        let error = Term::Agent(AgentRef::Id("h/n/1".into()))
            .decode::<Agent>()
            .unwrap_err();
        assert_eq!(
            error.to_string(),
            "expected an agent of this process, got \"h/n/1\""
        );
    }

    #[test]
    fn an_exited_agent_does_not_decode_as_a_handle() {
        let monitor = SpawnOptions::new().attach(Attach::Monitor);
        let gone = spawn_with(&monitor, || ()).unwrap();
        receive_timeout(Duration::from_secs(20)).expect("exit notice");
        let error = gone.to_term().decode::<Agent>().unwrap_err();
        assert!(
            error
                .to_string()
                .starts_with("expected an agent of this process that has not exited, got #<AGENT"),
            "{error}"
        );
        // As a reference it still decodes: sending to it is a dropped message.
        assert!(gone.to_term().decode::<AgentRef>().is_ok());
    }

    #[test]
    fn targets_from_agents_names_and_ids() {
        for text in [":logger", "\"logger\"", "\"h/n/3\""] {
            let target: Target = read(text).unwrap().decode().unwrap();
            assert!(matches!(target, Target::Term(_)), "{text}");
        }
        let me = Agent::current();
        assert!(me.to_term().decode::<Target>().is_ok());
        assert_eq!(
            read("3")
                .unwrap()
                .decode::<Target>()
                .unwrap_err()
                .to_string(),
            "expected an agent, a :NAME keyword or a string naming one, got 3"
        );
    }
}
