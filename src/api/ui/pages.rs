//! The UI's pages, rendered on the server as HTML: every value from the store or the
//! request goes through [`esc`], so a tag or a label cannot inject markup.

use super::{html_response, may_delete, Viewer};
use crate::api::body::{Body, Incoming};
use crate::api::AppState;
use crate::auth::access::Action;
use crate::registry::images::{
    hide_secret, human_bytes, Child, ImageConfig, ImageKind, ImageSummary, Layer,
};
use crate::registry::{Digest, Reference, RegistryError, RepositoryName, Tag};
use futures_util::stream::{self, StreamExt};
use http::{Request, Response, StatusCode};
use std::fmt::Write;
use std::sync::Arc;

/// Repositories per page of the list.
const PAGE: usize = 100;
/// Tags read at once while building a repository's page.
const CONCURRENCY: usize = 16;

/// HTML-escapes text for element content and quoted attributes.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn url_encode(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// The page around `main`: header with navigation and who is logged in.
fn layout(title: &str, viewer: Option<&Viewer<'_>>, state: &AppState, main: &str) -> String {
    let mut who = String::new();
    if let Some(v) = viewer.filter(|v| v.auth_on) {
        match v.user() {
            Some(u) => {
                let _ = write!(who, "<span class=\"who\">{}</span>", esc(u));
                if v.session.is_some() {
                    let _ = write!(
                        who,
                        "<form method=\"post\" action=\"/ui/logout\" class=\"inline\">\
                         <input type=\"hidden\" name=\"csrf\" value=\"{}\">\
                         <button type=\"submit\" class=\"link\">Log out</button></form>",
                        state.ui.sessions.csrf_token(&v.subject())
                    );
                }
            }
            None => who.push_str("<a href=\"/ui/login\">Log in</a>"),
        }
    }
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <meta name=\"color-scheme\" content=\"light dark\">\
         <title>{title} · Registry</title>\
         <link rel=\"stylesheet\" href=\"/ui/static/ui.css\">\
         <link rel=\"icon\" href=\"/ui/static/icon.svg\" type=\"image/svg+xml\">\
         <script src=\"/ui/static/ui.js\" defer></script></head>\n<body>\
         <a class=\"skip\" href=\"#main\">Skip to content</a>\
         <header><nav aria-label=\"Main\"><a class=\"brand\" href=\"/ui/\">Registry</a>\
         <a href=\"/ui/\">Repositories</a><a href=\"/ui/storage\">Storage</a>\
         <span class=\"session\">{who}</span></nav></header>\n\
         <main id=\"main\" tabindex=\"-1\">{main}</main></body></html>\n",
        title = esc(title),
    )
}

fn page(title: &str, viewer: &Viewer<'_>, state: &AppState, main: &str) -> Response<Body> {
    html_response(StatusCode::OK, layout(title, Some(viewer), state, main))
}

/// A page for a failure; it needs no state (it may answer before anything is known).
pub(super) fn error(status: StatusCode, message: &str) -> String {
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <meta name=\"color-scheme\" content=\"light dark\">\
         <title>{code} · Registry</title><link rel=\"stylesheet\" href=\"/ui/static/ui.css\">\
         <link rel=\"icon\" href=\"/ui/static/icon.svg\" type=\"image/svg+xml\"></head>\n<body>\
         <header><nav aria-label=\"Main\"><a class=\"brand\" href=\"/ui/\">Registry</a>\
         <a href=\"/ui/\">Repositories</a></nav></header>\
         <main id=\"main\"><h1>{code} {reason}</h1><p role=\"alert\">{msg}</p></main></body></html>\n",
        code = status.as_u16(),
        reason = esc(status.canonical_reason().unwrap_or("")),
        msg = esc(message),
    )
}

fn failure(e: RegistryError) -> super::Failure {
    let status = match e {
        RegistryError::NameUnknown(_) | RegistryError::ManifestUnknown(_) => StatusCode::NOT_FOUND,
        RegistryError::StorageUnavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    Box::new(html_response(status, error(status, &e.to_string())))
}

type PageResult = super::UiResult;

fn query(req: &Request<Incoming>, key: &str) -> Option<String> {
    crate::api::query_param(req, key)
}

/// `/ui/`: the repositories the viewer may pull, searched by substring, a page at a time.
pub(super) async fn repositories(
    state: &AppState,
    req: &Request<Incoming>,
    viewer: &Viewer<'_>,
) -> PageResult {
    let all = state.registry.catalog().await.map_err(failure)?;
    let q = query(req, "q").unwrap_or_default();
    let needle = q.trim().to_lowercase();
    let restricted = viewer.caller.restricted();
    let matching: Vec<&String> = all
        .iter()
        .filter(|n| n.contains(&needle))
        .filter(|n| !restricted || viewer.caller.may(n, Action::Pull))
        .collect();
    let pages = matching.len().div_ceil(PAGE).max(1);
    let n = query(req, "page")
        .and_then(|p| p.parse::<usize>().ok())
        .unwrap_or(1)
        .clamp(1, pages);
    let shown = &matching[((n - 1) * PAGE).min(matching.len())..(n * PAGE).min(matching.len())];

    let mut m = String::new();
    let _ = write!(
        m,
        "<h1>Repositories</h1>\
         <form class=\"search\" method=\"get\" action=\"/ui/\" role=\"search\">\
         <label for=\"q\">Search repositories</label>\
         <input id=\"q\" name=\"q\" type=\"search\" value=\"{}\" autocomplete=\"off\">\
         <button type=\"submit\">Search</button></form>",
        esc(&q)
    );
    let first = (n - 1) * PAGE + 1;
    if matching.is_empty() {
        m.push_str("<p role=\"status\" id=\"count\">No repositories match.</p>");
    } else {
        let _ = write!(
            m,
            "<p role=\"status\" id=\"count\">{}–{} of {} repositories{}</p>",
            first,
            first + shown.len() - 1,
            matching.len(),
            if needle.is_empty() {
                String::new()
            } else {
                format!(" matching “{}”", esc(&q))
            }
        );
    }
    m.push_str("<ul class=\"repos\" id=\"repositories\">");
    for name in shown {
        let _ = write!(m, "<li><a href=\"/ui/r/{0}\">{0}</a></li>", esc(name));
    }
    m.push_str("</ul>");
    if pages > 1 {
        let link = |p: usize| {
            let mut u = format!("/ui/?page={p}");
            if !q.is_empty() {
                u.push_str("&q=");
                u.push_str(&url_encode(&q));
            }
            esc(&u)
        };
        m.push_str("<nav class=\"pages\" aria-label=\"Pages\">");
        if n > 1 {
            let _ = write!(m, "<a rel=\"prev\" href=\"{}\">← Previous</a>", link(n - 1));
        }
        let _ = write!(m, "<span aria-current=\"page\">Page {n} of {pages}</span>");
        if n < pages {
            let _ = write!(m, "<a rel=\"next\" href=\"{}\">Next →</a>", link(n + 1));
        }
        m.push_str("</nav>");
    }
    Ok(page("Repositories", viewer, state, &m))
}

/// A tag and what it points at.
struct TagRow {
    tag: String,
    summary: Option<Arc<ImageSummary>>,
    digest: Option<Digest>,
}

/// One row of a repository's page: the tag resolved and its image summarised.
async fn tag_row(state: &AppState, name: &RepositoryName, tag: &str) -> TagRow {
    let registry = &state.registry;
    let digest = match tag.parse::<Reference>() {
        Ok(r) => registry.resolve(name, &r).await.ok(),
        Err(_) => None,
    };
    let summary = match &digest {
        Some(d) => state.ui.summaries.get(registry, d).await.ok().flatten(),
        None => None,
    };
    TagRow {
        tag: tag.to_owned(),
        summary,
        digest,
    }
}

/// `2024-01-02T03:04:05.123Z` as `2024-01-02 03:04` (UTC), in a `<time>`.
fn time(created: Option<&str>) -> String {
    match created {
        Some(c) if c.len() >= 16 => format!(
            "<time datetime=\"{}\">{} {}</time>",
            esc(c),
            esc(&c[..10]),
            esc(&c[11..16])
        ),
        Some(c) => esc(c),
        None => "—".to_owned(),
    }
}

fn short(d: &Digest) -> String {
    format!(
        "<code title=\"{}\">{}</code>",
        esc(&d.to_string()),
        esc(&d.hex()[..d.hex().len().min(12)])
    )
}

/// `/ui/r/<name>`: the tags with digest, size, created time and platforms; sortable.
pub(super) async fn repository(
    state: &AppState,
    req: &Request<Incoming>,
    viewer: &Viewer<'_>,
    name: &RepositoryName,
) -> PageResult {
    let tags = state.registry.tags(name).await.map_err(failure)?;
    let mut rows = tag_rows(state, name, &tags).await;
    let order = TagOrder::asked(req);
    order.sort(&mut rows);
    let mut m = String::new();
    let _ = write!(
        m,
        "<nav aria-label=\"Breadcrumb\" class=\"crumbs\"><a href=\"/ui/\">Repositories</a> / \
         <span aria-current=\"page\">{0}</span></nav><h1>{0}</h1>",
        esc(name.as_str())
    );
    if let Some(d) = query(req, "deleted") {
        let _ = write!(
            m,
            "<p role=\"status\" class=\"notice\">Deleted {}.</p>",
            esc(&d)
        );
    }
    let _ = write!(m, "<p>{} tags</p>", rows.len());
    let deletable = may_delete(state, viewer, name);
    m.push_str(&tags_table(name, &rows, &order, deletable));
    Ok(page(name.as_str(), viewer, state, &m))
}

/// Every tag's row, several read at a time.
async fn tag_rows(state: &AppState, name: &RepositoryName, tags: &[String]) -> Vec<TagRow> {
    // Boxed as `Send` futures: the stream then needs no higher-ranked lifetimes, which
    // the connection's `Send` bound cannot prove through these borrows.
    type RowFuture<'f> = std::pin::Pin<Box<dyn std::future::Future<Output = TagRow> + Send + 'f>>;
    let futures: Vec<RowFuture<'_>> = tags
        .iter()
        .map(|tag| Box::pin(tag_row(state, name, tag)) as RowFuture<'_>)
        .collect();
    stream::iter(futures).buffered(CONCURRENCY).collect().await
}

/// How the tags are sorted: by name or by creation time (`?sort=created`), either way round
/// (`&order=desc`; newest first by default).
struct TagOrder {
    by_time: bool,
    desc: bool,
}

impl TagOrder {
    fn asked(req: &Request<Incoming>) -> TagOrder {
        let by_time = query(req, "sort").is_some_and(|s| s == "created");
        let desc = query(req, "order").map_or(by_time, |o| o == "desc");
        TagOrder { by_time, desc }
    }

    fn sort(&self, rows: &mut [TagRow]) {
        if self.by_time {
            rows.sort_by(|a, b| {
                let key = |r: &TagRow| r.summary.as_ref().and_then(|s| s.created.clone());
                key(a).cmp(&key(b)).then_with(|| a.tag.cmp(&b.tag))
            });
        }
        if self.desc {
            rows.reverse();
        }
    }

    /// A sortable column's header: a link that sorts by it, the other way round when it
    /// already does.
    fn header(&self, name: &RepositoryName, label: &str, key: &str, default_desc: bool) -> String {
        let active = (key == "created") == self.by_time;
        let next_desc = if active { !self.desc } else { default_desc };
        let aria = if !active {
            "none"
        } else if self.desc {
            "descending"
        } else {
            "ascending"
        };
        let arrow = match (active, self.desc) {
            (false, _) => "",
            (true, true) => " ↓",
            (true, false) => " ↑",
        };
        format!(
            "<th scope=\"col\" aria-sort=\"{aria}\"><a href=\"/ui/r/{}?sort={key}&amp;order={}\">{label}{arrow}</a></th>",
            esc(name.as_str()),
            if next_desc { "desc" } else { "asc" }
        )
    }
}

/// The tags table, with a delete link on each row for those who may delete.
fn tags_table(name: &RepositoryName, rows: &[TagRow], order: &TagOrder, deletable: bool) -> String {
    let mut m = String::new();
    let _ = write!(
        m,
        "<div class=\"scroll\"><table id=\"tags\"><caption class=\"sr\">Tags of {}</caption>\
         <thead><tr>{}<th scope=\"col\">Digest</th><th scope=\"col\" class=\"num\">Size</th>{}\
         <th scope=\"col\">Platforms</th>{}</tr></thead><tbody>",
        esc(name.as_str()),
        order.header(name, "Tag", "name", false),
        order.header(name, "Created", "created", true),
        if deletable {
            "<th scope=\"col\"><span class=\"sr\">Actions</span></th>"
        } else {
            ""
        }
    );
    for r in rows {
        let s = r.summary.as_deref();
        let _ = write!(
            m,
            "<tr><th scope=\"row\"><a href=\"/ui/r/{n}/-/{t}\">{t}</a></th><td>{}</td>\
             <td class=\"num\">{}</td><td>{}</td><td>{}</td>",
            r.digest.as_ref().map_or_else(|| "—".to_owned(), short),
            s.map_or_else(|| "—".to_owned(), |s| esc(&human_bytes(s.size))),
            time(s.and_then(|s| s.created.as_deref())),
            s.map_or_else(String::new, |s| esc(&s.platforms.join(", "))),
            n = esc(name.as_str()),
            t = esc(&r.tag),
        );
        if deletable {
            let _ = write!(
                m,
                "<td><a class=\"danger\" href=\"/ui/r/{n}/-/{t}/delete\" aria-label=\"Delete tag {t}\">Delete</a></td>",
                n = esc(name.as_str()),
                t = esc(&r.tag)
            );
        }
        m.push_str("</tr>");
    }
    m.push_str("</tbody></table></div>");
    m
}

/// Rows of a definition list, skipping empty values.
fn dl(items: &[(&str, String)]) -> String {
    let mut out = String::from("<dl>");
    for (k, v) in items.iter().filter(|(_, v)| !v.is_empty()) {
        let _ = write!(out, "<dt>{}</dt><dd>{v}</dd>", esc(k));
    }
    out.push_str("</dl>");
    out
}

fn words(list: &Option<Vec<String>>) -> String {
    list.as_ref()
        .map(|l| format!("<code>{}</code>", esc(&l.join(" "))))
        .unwrap_or_default()
}

fn pairs_table(id: &str, caption: &str, pairs: &[(String, String)]) -> String {
    let mut out = format!(
        "<div class=\"scroll\"><table id=\"{id}\"><caption>{}</caption><thead><tr>\
         <th scope=\"col\">Key</th><th scope=\"col\">Value</th></tr></thead><tbody>",
        esc(caption)
    );
    for (k, v) in pairs {
        let _ = write!(
            out,
            "<tr><th scope=\"row\"><code>{}</code></th><td>{}</td></tr>",
            esc(k),
            esc(v)
        );
    }
    out.push_str("</tbody></table></div>");
    out
}

/// The host a client pulls from: the request's `Host`.
fn host(req: &Request<Incoming>) -> String {
    crate::api::header_str(req, http::header::HOST)
        .or_else(|| req.uri().authority().map(|a| a.as_str()))
        .unwrap_or("localhost:5000")
        .to_owned()
}

/// `/ui/r/<name>/-/<reference>`: one manifest in full.
pub(super) async fn image(
    state: &AppState,
    req: &Request<Incoming>,
    viewer: &Viewer<'_>,
    name: &RepositoryName,
    reference: &Reference,
) -> PageResult {
    let registry = &state.registry;
    let digest = registry.resolve(name, reference).await.map_err(failure)?;
    let s = state
        .ui
        .summaries
        .get(registry, &digest)
        .await
        .map_err(failure)?
        .ok_or_else(|| {
            failure(RegistryError::ManifestUnknown(format!(
                "{reference}: the manifest cannot be read"
            )))
        })?;
    let tags = registry
        .tags_pointing_at(name, &digest)
        .await
        .unwrap_or_default();
    let n = esc(name.as_str());
    let mut m = image_heading(&n, reference, &host(req), name);
    m.push_str(&image_facts(&n, &digest, &s, &tags));
    match &s.kind {
        ImageKind::Index { children } => m.push_str(&platforms_table(&n, children)),
        ImageKind::Image {
            config,
            layers,
            details,
        } => {
            if let Some(c) = details {
                m.push_str(&config_section(c));
            }
            m.push_str(&layers_table(config, layers));
        }
    }
    if !s.annotations.is_empty() {
        m.push_str(&pairs_table("annotations", "Annotations", &s.annotations));
    }
    let referrers = registry
        .referrers(name, &digest, None)
        .await
        .unwrap_or_default();
    m.push_str(&referrers_section(&n, &referrers));
    if may_delete(state, viewer, name) {
        m.push_str(&delete_links(&n, &digest, reference));
    }
    Ok(page(&format!("{name}:{reference}"), viewer, state, &m))
}

/// The image page's breadcrumbs, title and pull command (`n`: the name, escaped).
fn image_heading(n: &str, reference: &Reference, host: &str, name: &RepositoryName) -> String {
    let pull = match reference {
        Reference::Tag(t) => format!("docker pull {host}/{name}:{t}"),
        Reference::Digest(d) => format!("docker pull {host}/{name}@{d}"),
    };
    format!(
        "<nav aria-label=\"Breadcrumb\" class=\"crumbs\"><a href=\"/ui/\">Repositories</a> / \
         <a href=\"/ui/r/{n}\">{n}</a> / <span aria-current=\"page\">{r}</span></nav>\
         <h1>{n}<span class=\"ref\">{sep}{r}</span></h1>\
         <div class=\"pull\"><label for=\"pull\">Pull command</label>\
         <input id=\"pull\" readonly value=\"{p}\">\
         <button type=\"button\" data-copy=\"pull\">Copy</button>\
         <span class=\"copied\" role=\"status\" aria-live=\"polite\"></span></div>",
        r = esc(&reference.to_string()),
        sep = if matches!(reference, Reference::Tag(_)) {
            ":"
        } else {
            "@"
        },
        p = esc(&pull),
    )
}

/// What the summary says of a manifest, and the tags pointing at it.
fn image_facts(n: &str, digest: &Digest, s: &ImageSummary, tags: &[Tag]) -> String {
    let tag_links: Vec<String> = tags
        .iter()
        .map(|t| format!("<a href=\"/ui/r/{n}/-/{0}\">{0}</a>", esc(t.as_str())))
        .collect();
    dl(&[
        (
            "Digest",
            format!("<code id=\"digest\">{}</code>", esc(&digest.to_string())),
        ),
        ("Media type", esc(&s.media_type)),
        (
            "Artifact type",
            s.artifact_type.as_deref().map(esc).unwrap_or_default(),
        ),
        (
            "Size",
            format!("{} ({} bytes)", esc(&human_bytes(s.size)), s.size),
        ),
        (
            "Created",
            s.created
                .as_deref()
                .map(|c| time(Some(c)))
                .unwrap_or_default(),
        ),
        ("Platforms", esc(&s.platforms.join(", "))),
        ("Tags", tag_links.join(", ")),
        (
            "Subject",
            s.subject
                .as_ref()
                .map(|d| format!("<a href=\"/ui/r/{n}/-/{0}\">{0}</a>", esc(&d.to_string())))
                .unwrap_or_default(),
        ),
    ])
}

/// An index's platforms, each linking to its manifest.
fn platforms_table(n: &str, children: &[Child]) -> String {
    let mut m = String::from(
        "<h2>Platforms</h2><div class=\"scroll\"><table id=\"platforms\"><thead><tr>\
         <th scope=\"col\">Platform</th><th scope=\"col\">Digest</th>\
         <th scope=\"col\" class=\"num\">Size</th></tr></thead><tbody>",
    );
    for c in children {
        let _ = write!(
            m,
            "<tr><th scope=\"row\"><a href=\"/ui/r/{n}/-/{d}\">{p}</a></th><td>{}</td><td class=\"num\">{}</td></tr>",
            short(&c.digest),
            c.size.map(human_bytes).map(|h| esc(&h)).unwrap_or_else(|| "—".into()),
            d = esc(&c.digest.to_string()),
            p = esc(&c.platform),
        );
    }
    m.push_str("</tbody></table></div>");
    m
}

/// What an image's config says: how it runs, and its labels.
fn config_section(c: &ImageConfig) -> String {
    let env: Vec<String> = c
        .env
        .iter()
        .map(|e| format!("<code>{}</code>", esc(&hide_secret(e))))
        .collect();
    let mut m = String::from("<h2>Config</h2>");
    m.push_str(&dl(&[
        ("Entrypoint", words(&c.entrypoint)),
        ("Command", words(&c.cmd)),
        (
            "Working directory",
            c.working_dir.as_deref().map(esc).unwrap_or_default(),
        ),
        ("User", c.user.as_deref().map(esc).unwrap_or_default()),
        ("Exposed ports", esc(&c.exposed_ports.join(", "))),
        ("Environment", env.join("<br>")),
    ]));
    if !c.labels.is_empty() {
        m.push_str(&pairs_table("labels", "Labels", &c.labels));
    }
    m
}

/// An image's layers in order, and its config blob.
fn layers_table(config: &Layer, layers: &[Layer]) -> String {
    let mut m = String::from(
        "<h2>Layers</h2><div class=\"scroll\"><table id=\"layers\"><thead><tr>\
         <th scope=\"col\" class=\"num\">#</th><th scope=\"col\">Digest</th>\
         <th scope=\"col\">Media type</th><th scope=\"col\" class=\"num\">Size</th>\
         </tr></thead><tbody>",
    );
    for (i, l) in layers.iter().enumerate() {
        let _ = write!(
            m,
            "<tr><td class=\"num\">{}</td><td>{}</td><td>{}</td><td class=\"num\">{}</td></tr>",
            i + 1,
            short(&l.digest),
            esc(&l.media_type),
            esc(&human_bytes(l.size))
        );
    }
    let _ = write!(
        m,
        "</tbody><tfoot><tr><td></td><td>config {}</td><td>{}</td><td class=\"num\">{}</td></tr></tfoot></table></div>",
        short(&config.digest),
        esc(&config.media_type),
        esc(&human_bytes(config.size))
    );
    m
}

/// The signatures, SBOMs and attestations referring to a manifest.
fn referrers_section(n: &str, referrers: &[serde_json::Value]) -> String {
    let mut m = String::from("<h2>Referrers</h2>");
    if referrers.is_empty() {
        m.push_str("<p>No signatures, SBOMs or attestations refer to this manifest.</p>");
        return m;
    }
    m.push_str(
        "<div class=\"scroll\"><table id=\"referrers\"><thead><tr><th scope=\"col\">Artifact type</th>\
         <th scope=\"col\">Digest</th><th scope=\"col\" class=\"num\">Size</th></tr></thead><tbody>",
    );
    for r in referrers {
        let field = |k: &str| r.get(k).and_then(|v| v.as_str()).unwrap_or("").to_owned();
        let d = field("digest");
        let _ = write!(
            m,
            "<tr><td>{}</td><td><a href=\"/ui/r/{n}/-/{d}\"><code>{d}</code></a></td><td class=\"num\">{}</td></tr>",
            esc(&field("artifactType")),
            r.get("size").and_then(|v| v.as_u64()).unwrap_or(0),
            d = esc(&d),
        );
    }
    m.push_str("</tbody></table></div>");
    m
}

/// Links to delete the manifest, and from a tag's page the tag alone.
fn delete_links(n: &str, digest: &Digest, reference: &Reference) -> String {
    let mut m = format!(
        "<h2>Delete</h2><p><a class=\"danger\" href=\"/ui/r/{n}/-/{d}/delete\">Delete this manifest…</a>",
        d = esc(&digest.to_string())
    );
    if let Reference::Tag(t) = reference {
        let _ = write!(
            m,
            " or <a class=\"danger\" href=\"/ui/r/{n}/-/{t}/delete\">remove only the tag {t}…</a>",
            t = esc(t.as_str())
        );
    }
    m.push_str("</p>");
    m
}

/// `GET .../delete`: what the deletion would remove, and the form that does it.
pub(super) async fn confirm_delete(
    state: &AppState,
    viewer: &Viewer<'_>,
    name: &RepositoryName,
    reference: &Reference,
) -> PageResult {
    if !may_delete(state, viewer, name) {
        return Err(super::error_page(
            StatusCode::FORBIDDEN,
            "Deletion is disabled on this registry (see --delete-enabled), it is \
             read-only, or the access rules do not let you delete here.",
        ));
    }
    let digest = state
        .registry
        .resolve(name, reference)
        .await
        .map_err(failure)?;
    let tags = state
        .registry
        .tags_pointing_at(name, &digest)
        .await
        .map_err(failure)?;
    let n = esc(name.as_str());
    let d = esc(&digest.to_string());
    let list = |tags: &[&str]| {
        let items: String = tags
            .iter()
            .map(|t| format!("<li><code>{}</code></li>", esc(t)))
            .collect();
        format!("<ul id=\"untags\">{items}</ul>")
    };
    let mut m = format!(
        "<nav aria-label=\"Breadcrumb\" class=\"crumbs\"><a href=\"/ui/\">Repositories</a> / \
         <a href=\"/ui/r/{n}\">{n}</a></nav>"
    );
    match reference {
        Reference::Tag(t) => {
            let others: Vec<&str> = tags
                .iter()
                .map(|x| x.as_str())
                .filter(|x| *x != t.as_str())
                .collect();
            let _ = write!(
                m,
                "<h1>Remove the tag {t} from {n}?</h1><p>Only the tag goes. The manifest \
                 <code>{d}</code> stays, reachable by its digest",
                t = esc(t.as_str())
            );
            if others.is_empty() {
                m.push_str(
                    " (no other tag points at it; garbage collection with untagged \
                            deletion may remove it later).</p>",
                );
            } else {
                m.push_str(" and by these tags:</p>");
                m.push_str(&list(&others));
            }
        }
        Reference::Digest(_) => {
            let _ = write!(
                m,
                "<h1>Delete the manifest from {n}?</h1><p>The manifest <code>{d}</code> \
                 is removed from the repository"
            );
            if tags.is_empty() {
                m.push_str("; no tag points at it.</p>");
            } else {
                m.push_str(", and with it every tag that points at it:</p>");
                m.push_str(&list(&tags.iter().map(|t| t.as_str()).collect::<Vec<_>>()));
            }
        }
    }
    let _ = write!(
        m,
        "<form method=\"post\" action=\"/ui/r/{n}/-/{r}/delete\">\
         <input type=\"hidden\" name=\"csrf\" value=\"{c}\">\
         <button type=\"submit\" class=\"danger\" id=\"confirm\">Delete</button> \
         <a href=\"/ui/r/{n}\">Cancel</a></form>",
        r = esc(&reference.to_string()),
        c = state.ui.sessions.csrf_token(&viewer.subject()),
    );
    Ok(page("Delete", viewer, state, &m))
}

/// `/ui/storage`: bytes in the blob store and the last garbage collection.
pub(super) async fn storage(state: &AppState, viewer: &Viewer<'_>) -> PageResult {
    let last_gc = state.registry.last_collection();
    let cached = *state.ui.storage.lock().unwrap_or_else(|p| p.into_inner());
    // A walk is reused for a while, unless a collection has ended since.
    let (bytes, blobs) = match cached {
        Some((at, b, n))
            if at.elapsed().unwrap_or_default() < super::STORAGE_TTL
                && last_gc.as_ref().is_none_or(|l| l.finished < at) =>
        {
            (b, n)
        }
        _ => {
            let at = std::time::SystemTime::now();
            let (b, n) = state.registry.storage_used().await.map_err(failure)?;
            *state.ui.storage.lock().unwrap_or_else(|p| p.into_inner()) = Some((at, b, n));
            (b, n)
        }
    };
    let repositories = state.registry.catalog().await.map_err(failure)?.len();
    let o = state.registry.options();
    let mut m = String::from("<h1>Storage</h1>");
    m.push_str(&dl(&[
        (
            "Storage used",
            format!(
                "<span id=\"used\">{}</span> ({bytes} bytes in {blobs} blobs)",
                esc(&human_bytes(bytes))
            ),
        ),
        ("Repositories", repositories.to_string()),
        ("Backend", esc(&state.registry.driver().location())),
        (
            "Deletion",
            if o.delete_enabled {
                "enabled"
            } else {
                "disabled"
            }
            .to_owned(),
        ),
        (
            "Mode",
            if o.readonly {
                "read-only"
            } else {
                "read-write"
            }
            .to_owned(),
        ),
    ]));
    m.push_str("<h2>Last garbage collection</h2>");
    match last_gc {
        None => m.push_str(
            "<p id=\"gc\">None since this daemon started. Collect with \
             <code>docker-registry garbage-collect --online</code> or a <code>gc.interval</code>.</p>",
        ),
        Some(l) => {
            let when = humantime::format_rfc3339_seconds(l.finished).to_string();
            match l.result {
                Ok(r) => {
                    let _ = write!(m, "<div id=\"gc\">");
                    m.push_str(&dl(&[
                        ("Finished", time(Some(&when))),
                        ("Dry run", if r.dry_run { "yes" } else { "no" }.to_owned()),
                        ("Blobs removed", r.blobs_removed.to_string()),
                        ("Space freed", esc(&human_bytes(r.bytes_freed))),
                        ("Untagged manifests removed", r.manifests_removed.to_string()),
                        ("Blobs kept (young or in use)", r.blobs_kept_young.to_string()),
                        ("Errors", r.errors.to_string()),
                        ("Took", format!("{:.1} s", r.elapsed.as_secs_f64())),
                    ]));
                    m.push_str("</div>");
                }
                Err(e) => {
                    let _ = write!(
                        m,
                        "<p id=\"gc\">Failed at {}: {}</p>",
                        time(Some(&when)),
                        esc(&e)
                    );
                }
            }
        }
    }
    Ok(page("Storage", viewer, state, &m))
}

/// `GET /ui/login`.
pub(super) fn login(
    state: &AppState,
    req: &Request<Incoming>,
    message: Option<&str>,
) -> Response<Body> {
    let next = query(req, "next").unwrap_or_else(|| "/ui/".into());
    login_with(super::safe_next(&next), message.unwrap_or(""), state)
}

/// The login form, going to `next` after, with a message (a failed attempt).
pub(super) fn login_with(next: &str, message: &str, state: &AppState) -> Response<Body> {
    let alert = if message.is_empty() {
        String::new()
    } else {
        format!("<p role=\"alert\" class=\"error\">{}</p>", esc(message))
    };
    let m = format!(
        "<h1>Log in</h1>{alert}<form method=\"post\" action=\"/ui/login\" class=\"login\">\
         <input type=\"hidden\" name=\"csrf\" value=\"{c}\">\
         <input type=\"hidden\" name=\"next\" value=\"{next}\">\
         <label for=\"username\">User</label>\
         <input id=\"username\" name=\"username\" autocomplete=\"username\" required autofocus>\
         <label for=\"password\">Password</label>\
         <input id=\"password\" name=\"password\" type=\"password\" autocomplete=\"current-password\" required>\
         <button type=\"submit\">Log in</button></form>",
        c = state.ui.sessions.csrf_token(&super::session::Subject::Nobody),
        next = esc(next),
    );
    html_response(StatusCode::OK, layout("Log in", None, state, &m))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markup_in_values_is_escaped() {
        assert_eq!(
            esc("<script>\"a\"&'b'</script>"),
            "&lt;script&gt;&quot;a&quot;&amp;&#39;b&#39;&lt;/script&gt;"
        );
    }
}
