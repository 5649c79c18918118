//! Independent scenario runs spread over threads, with a progress bar.

use std::sync::Mutex;

use indicatif::{ProgressBar, ProgressStyle};

/// Runs `run` on every job over `threads` threads (a progress bar unless
/// `quiet`); results in job order, or the first error.
pub fn run_all<J: Sync, O: Send, E: Send>(
    jobs: &[J],
    threads: usize,
    quiet: bool,
    label: impl Fn(&J) -> String + Sync,
    run: impl Fn(&J) -> Result<O, E> + Sync,
) -> Result<Vec<O>, E> {
    let pb = if quiet {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(jobs.len() as u64)
    };
    pb.set_style(
        ProgressStyle::with_template("{bar:30} {pos}/{len} runs  {elapsed_precise}  {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let results: Mutex<Vec<(usize, O)>> = Mutex::new(Vec::new());
    let next = Mutex::new(0usize);
    let failure: Mutex<Option<E>> = Mutex::new(None);
    std::thread::scope(|scope| {
        for _ in 0..threads.clamp(1, 64) {
            scope.spawn(|| loop {
                if failure.lock().map(|f| f.is_some()).unwrap_or(true) {
                    break;
                }
                let i = {
                    let mut n = next.lock().unwrap_or_else(|e| e.into_inner());
                    let i = *n;
                    *n += 1;
                    i
                };
                let Some(job) = jobs.get(i) else { break };
                match run(job) {
                    Ok(out) => {
                        pb.set_message(label(job));
                        pb.inc(1);
                        results.lock().unwrap_or_else(|e| e.into_inner()).push((i, out));
                    }
                    Err(e) => {
                        *failure.lock().unwrap_or_else(|e| e.into_inner()) = Some(e);
                        break;
                    }
                }
            });
        }
    });
    pb.finish_and_clear();
    if let Some(e) = failure.into_inner().unwrap_or_else(|e| e.into_inner()) {
        return Err(e);
    }
    let mut results = results.into_inner().unwrap_or_else(|e| e.into_inner());
    results.sort_by_key(|(i, _)| *i);
    Ok(results.into_iter().map(|(_, o)| o).collect())
}
