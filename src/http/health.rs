//! `GET /healthz` (the process answers), `GET /readyz` (the database answers and every
//! migration is applied).

use actix_web::{web, HttpResponse};
use serde_json::json;

use crate::db::{Db, DbError};

pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

pub async fn readyz(db: web::Data<Db>) -> HttpResponse {
    let backend = db.backend().name();
    match db.run(Db::check_ready).await {
        Ok(()) => HttpResponse::Ok().json(json!({"status": "ready", "database": backend})),
        Err(e) => {
            let reason = match &e {
                DbError::Migration(_) => "migrations pending",
                _ => "database unreachable",
            };
            tracing::warn!(error = %e, "not ready");
            HttpResponse::ServiceUnavailable()
                .json(json!({"status": "not ready", "database": backend, "reason": reason}))
        }
    }
}
