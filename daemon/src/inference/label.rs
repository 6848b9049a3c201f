//! The model a request resolved to, kept beside the request's task so the HTTP counter (`api::metrics`) can label
//! its line with it. Only names that resolved to an imported model are noted, so labels stay bounded.

use std::cell::RefCell;
use std::future::Future;

tokio::task_local! {
    static MODEL: RefCell<Option<String>>;
}

/// Records the resolved model of the request being handled (a no-op outside `scoped`).
pub fn note(model: &str) {
    let _ = MODEL.try_with(|m| *m.borrow_mut() = Some(model.to_owned()));
}

/// Runs a request's future and returns its output with the model it noted, if any.
pub async fn scoped<F: Future>(fut: F) -> (F::Output, Option<String>) {
    MODEL
        .scope(RefCell::new(None), async {
            let out = fut.await;
            (out, MODEL.with(|m| m.borrow_mut().take()))
        })
        .await
}
