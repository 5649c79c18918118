//! Simulated time as whole milliseconds, as SUMO keeps it (`SUMOTime`):
//! adding an `f64` step thousands of times drifts (0.1 s × 36,000 steps is
//! not 3,600 s), a step count times an integer step length does not.

/// The engine's clock: the begin time and step length in ms, and the steps
/// taken. Every time the engine reads is derived from these three.
#[derive(Debug, Clone, Copy)]
pub(super) struct Clock {
    begin_ms: i64,
    step_ms: i64,
    steps: u64,
}

impl Clock {
    /// `begin` and `step_length` in seconds, rounded to the millisecond.
    ///
    /// # Panics
    /// When the step rounds to less than 1 ms (callers check it first: the
    /// CLI refuses such a `--step-length`).
    pub(super) fn new(begin: f64, step_length: f64) -> Clock {
        let step_ms = (step_length * 1000.0).round() as i64;
        assert!(step_ms >= 1, "step length {step_length} s is under 1 ms");
        Clock {
            begin_ms: (begin * 1000.0).round() as i64,
            step_ms,
            steps: 0,
        }
    }

    /// The start of the current step, ms.
    pub(super) fn now_ms(&self) -> i64 {
        self.begin_ms + self.steps as i64 * self.step_ms
    }

    /// The start of the current step, s.
    pub(super) fn now(&self) -> f64 {
        self.now_ms() as f64 / 1000.0
    }

    /// The end of the current step (when what moves in it gets there), ms.
    pub(super) fn end_of_step_ms(&self) -> i64 {
        self.now_ms() + self.step_ms
    }

    /// The end of the current step, s.
    pub(super) fn end_of_step(&self) -> f64 {
        self.end_of_step_ms() as f64 / 1000.0
    }

    /// The step length, s.
    pub(super) fn step_length(&self) -> f64 {
        self.step_ms as f64 / 1000.0
    }

    /// Steps taken so far (the random draws are keyed by it).
    pub(super) fn steps(&self) -> u64 {
        self.steps
    }

    pub(super) fn tick(&mut self) {
        self.steps += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::Clock;

    #[test]
    fn a_tenth_of_a_second_step_does_not_drift() {
        let mut c = Clock::new(0.0, 0.1);
        let mut drifting = 0.0f64;
        for _ in 0..36_000 {
            c.tick();
            drifting += 0.1;
        }
        assert_eq!(c.now(), 3600.0);
        assert_ne!(drifting, 3600.0, "the f64 sum drifts; the clock must not");
    }

    #[test]
    fn whole_second_steps_read_as_the_f64_sum_would() {
        // The goldens were made with an f64 clock and 1-s steps: same values.
        let mut c = Clock::new(25_200.0, 1.0);
        let mut t = 25_200.0f64;
        for _ in 0..10_000 {
            assert_eq!(c.now(), t);
            assert_eq!(c.end_of_step(), t + 1.0);
            c.tick();
            t += 1.0;
        }
    }

    #[test]
    #[should_panic(expected = "under 1 ms")]
    fn a_step_under_a_millisecond_is_refused() {
        Clock::new(0.0, 0.0004);
    }
}
