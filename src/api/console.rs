//! The web console: static files under `/console/`, embedded in the
//! binary (`console/` in the repository), served without a signature.
//!
//! The console adds no way in. Its files hold no secret and reveal
//! nothing a caller could not read in the repository; every call it makes
//! is an ordinary signed API request, signed in the browser with the
//! access key and secret key the operator types (see `console/sign.js`).
//! So the pages are served with a strict Content-Security-Policy: scripts,
//! styles, images and connections from this origin only, no inline script,
//! no framing.

use axum::extract::Path;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;

/// The files, with their content types. Names are flat: no directories.
const ASSETS: &[(&str, &str, &[u8])] = &[
    (
        "index.html",
        "text/html; charset=utf-8",
        include_bytes!("../../console/index.html"),
    ),
    (
        "console.css",
        "text/css; charset=utf-8",
        include_bytes!("../../console/console.css"),
    ),
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../console/app.js"),
    ),
    (
        "api.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../console/api.js"),
    ),
    (
        "sign.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../console/sign.js"),
    ),
    (
        "format.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../console/format.js"),
    ),
    (
        "favicon.svg",
        "image/svg+xml",
        include_bytes!("../../console/favicon.svg"),
    ),
];

/// Only this origin's scripts, styles, images and API; nothing inline,
/// no plugins, no framing, no form posts anywhere.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
    img-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'none'; \
    frame-ancestors 'none'";

pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route(
            "/console",
            get(|| async { Redirect::permanent("/console/") }),
        )
        .route(
            "/console/",
            get(|h: HeaderMap| async move { asset("index.html", &h) }),
        )
        .route(
            "/console/{*file}",
            get(|Path(file): Path<String>, h: HeaderMap| async move { asset(&file, &h) }),
        )
}

/// A strong validator of a file's bytes, so that a browser revalidating
/// (`Cache-Control: no-cache`) downloads a file again only when this
/// binary's copy differs from what it holds.
fn etag(bytes: &[u8]) -> String {
    let hash = blake3::hash(bytes);
    format!("\"{}\"", &hash.to_hex()[..32])
}

fn asset(name: &str, request: &HeaderMap) -> Response {
    let Some((_, content_type, bytes)) = ASSETS.iter().find(|(n, _, _)| *n == name) else {
        let mut r = (StatusCode::NOT_FOUND, "Not found.\n").into_response();
        secure(r.headers_mut(), "text/plain; charset=utf-8");
        return r;
    };
    let tag = etag(bytes);
    let fresh = request
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == tag));
    let mut r = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        (StatusCode::OK, *bytes).into_response()
    };
    let h = r.headers_mut();
    secure(h, content_type);
    if let Ok(v) = HeaderValue::from_str(&tag) {
        h.insert(header::ETAG, v);
    }
    r
}

fn secure(h: &mut HeaderMap, content_type: &'static str) {
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    // The files are not named by their content: revalidate every time
    // (a 304 when unchanged), so an upgraded service is never mixed with
    // an older cached script.
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;

    async fn get(path: &str, headers: &[(&str, &str)]) -> Response {
        let mut req = Request::get(path);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let app: Router = routes();
        app.oneshot(req.body(Body::empty()).unwrap()).await.unwrap()
    }

    fn header<'a>(r: &'a Response, name: &str) -> &'a str {
        r.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    async fn body(r: Response) -> String {
        let b = axum::body::to_bytes(r.into_body(), 1 << 20).await.unwrap();
        String::from_utf8(b.to_vec()).unwrap()
    }

    #[tokio::test]
    async fn serves_every_file_with_its_type_and_a_strict_policy() {
        for (path, ty) in [
            ("/console/", "text/html; charset=utf-8"),
            ("/console/index.html", "text/html; charset=utf-8"),
            ("/console/app.js", "text/javascript; charset=utf-8"),
            ("/console/sign.js", "text/javascript; charset=utf-8"),
            ("/console/console.css", "text/css; charset=utf-8"),
            ("/console/favicon.svg", "image/svg+xml"),
        ] {
            let r = get(path, &[]).await;
            assert_eq!(r.status(), StatusCode::OK, "{path}");
            assert_eq!(header(&r, "content-type"), ty, "{path}");
            let csp = header(&r, "content-security-policy");
            for part in [
                "default-src 'none'",
                "script-src 'self'",
                "connect-src 'self'",
                "frame-ancestors 'none'",
            ] {
                assert!(csp.contains(part), "{path}: {csp}");
            }
            assert!(!csp.contains("unsafe"), "{csp}");
            assert_eq!(header(&r, "x-content-type-options"), "nosniff");
            assert_eq!(header(&r, "cache-control"), "no-cache");
            assert!(header(&r, "etag").starts_with('"'));
        }
        let page = body(get("/console/", &[]).await).await;
        assert!(page.contains("<script type=\"module\" src=\"app.js\"></script>"));
        // No inline script and nothing from elsewhere.
        assert_eq!(page.matches("<script").count(), 1, "{page}");
        assert!(!page.contains("http://") && !page.contains("https://"));
    }

    #[tokio::test]
    async fn bare_path_redirects_and_unknown_files_are_404() {
        let r = get("/console", &[]).await;
        assert_eq!(r.status(), StatusCode::PERMANENT_REDIRECT);
        assert_eq!(header(&r, "location"), "/console/");
        for path in [
            "/console/nope.js",
            "/console/..%2FCargo.toml",
            "/console/APP.JS",
            "/console/app.js/x",
        ] {
            let r = get(path, &[]).await;
            assert_eq!(r.status(), StatusCode::NOT_FOUND, "{path}");
            assert_eq!(header(&r, "x-content-type-options"), "nosniff");
        }
    }

    #[tokio::test]
    async fn unchanged_files_answer_304() {
        let first = get("/console/app.js", &[]).await;
        let tag = header(&first, "etag").to_owned();
        let again = get("/console/app.js", &[("if-none-match", &tag)]).await;
        assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
        assert!(body(again).await.is_empty());
        let other = get("/console/app.js", &[("if-none-match", "\"x\"")]).await;
        assert_eq!(other.status(), StatusCode::OK);
    }
}
