//! How the analyzer's work runs: the lanes that keep a standard tenant's
//! work from slowing a premium one ([`lanes`]), and the circuit breaker in
//! front of a dependency that may stop answering ([`breaker`]).

pub mod breaker;
pub mod lanes;
