//! Query strings and pages: `per_page` and `page` as GitHub takes them, and the `Link`
//! header it answers a page with; or, for lists paged by cursor (the delivery log), the
//! `Link` header naming the next page's cursor.

use super::Answer;
use super::endpoints::invalid;

pub(super) fn query_pairs(query: &str) -> Vec<(String, String)> {
    form_urlencoded::parse(query.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

/// `per_page` (1..=100, default 30) and `page` (from 1); 422 for other keys.
pub(super) fn pagination(query: &str, allowed: &[&str]) -> Result<(usize, usize), Answer> {
    let (mut per_page, mut page) = (30, 1);
    for (key, value) in query_pairs(query) {
        if !allowed.contains(&key.as_str()) {
            return Err(invalid(&format!(
                "Invalid request: unknown parameter {key}"
            )));
        }
        match (key.as_str(), value.parse::<usize>()) {
            ("per_page", Ok(n @ 1..=100)) => per_page = n,
            ("page", Ok(n @ 1..)) => page = n,
            ("per_page" | "page", _) => {
                return Err(invalid(&format!("Invalid request: bad {key}")));
            }
            _ => {}
        }
    }
    Ok((per_page, page))
}

/// The `Link` header GitHub answers a page of a list with: `first` and `prev` after the
/// first page, `next` and `last` before the last, each the request's own URL (on `host`)
/// with its `page` changed. `None` when everything fits in one page.
pub(super) fn link(
    host: &str,
    path: &str,
    query: &str,
    total: usize,
    (per_page, page): (usize, usize),
) -> Option<String> {
    let last = total.div_ceil(per_page).max(1);
    if last == 1 && page == 1 {
        return None;
    }
    let url = |n: usize| {
        let mut query: Vec<(String, String)> = query_pairs(query)
            .into_iter()
            .filter(|(k, _)| k != "page")
            .collect();
        query.push(("page".into(), n.to_string()));
        let query = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(query)
            .finish();
        format!("<http://{host}{path}?{query}>")
    };
    let mut links = Vec::new();
    if page < last {
        links.push(format!("{}; rel=\"next\"", url(page + 1)));
        links.push(format!("{}; rel=\"last\"", url(last)));
    }
    if page > 1 {
        links.push(format!("{}; rel=\"first\"", url(1)));
        links.push(format!("{}; rel=\"prev\"", url((page - 1).min(last))));
    }
    Some(links.join(", "))
}

/// The `Link` header of a page of a list paged by cursor: `next` (when there is a next
/// page) and, after the first page, `first`, each the request's own URL (on `host`) with
/// its `cursor` changed. `None` for the one page of a short list.
pub(super) fn cursor_link(
    host: &str,
    path: &str,
    query: &str,
    next: Option<&str>,
) -> Option<String> {
    let pairs = query_pairs(query);
    let url = |cursor: Option<&str>| {
        let query = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(pairs.iter().filter(|(k, _)| k != "cursor"))
            .extend_pairs(cursor.map(|c| ("cursor", c)))
            .finish();
        match query.is_empty() {
            true => format!("<http://{host}{path}>"),
            false => format!("<http://{host}{path}?{query}>"),
        }
    };
    let mut links = Vec::new();
    if let Some(next) = next {
        links.push(format!("{}; rel=\"next\"", url(Some(next))));
    }
    if pairs.iter().any(|(k, _)| k == "cursor") {
        links.push(format!("{}; rel=\"first\"", url(None)));
    }
    (!links.is_empty()).then(|| links.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_middle_page_links_every_way_and_a_single_page_links_nowhere() {
        let link = link(
            "h",
            "/orgs/o/actions/runners",
            "per_page=100&page=2",
            250,
            (100, 2),
        );
        assert_eq!(
            link.as_deref(),
            Some(
                "<http://h/orgs/o/actions/runners?per_page=100&page=3>; rel=\"next\", \
                 <http://h/orgs/o/actions/runners?per_page=100&page=3>; rel=\"last\", \
                 <http://h/orgs/o/actions/runners?per_page=100&page=1>; rel=\"first\", \
                 <http://h/orgs/o/actions/runners?per_page=100&page=1>; rel=\"prev\""
            )
        );
        assert_eq!(super::link("h", "/p", "", 30, (30, 1)), None);
    }

    #[test]
    fn a_cursor_page_links_the_next_cursor_and_the_first_page() {
        let path = "/app/hook/deliveries";
        assert_eq!(
            cursor_link("h", path, "per_page=100", Some("v1_9")).as_deref(),
            Some("<http://h/app/hook/deliveries?per_page=100&cursor=v1_9>; rel=\"next\"")
        );
        assert_eq!(
            cursor_link("h", path, "cursor=v1_9&per_page=100", Some("v1_5")).as_deref(),
            Some(
                "<http://h/app/hook/deliveries?per_page=100&cursor=v1_5>; rel=\"next\", \
                 <http://h/app/hook/deliveries?per_page=100>; rel=\"first\""
            )
        );
        assert_eq!(
            cursor_link("h", path, "cursor=v1_5", None).as_deref(),
            Some("<http://h/app/hook/deliveries>; rel=\"first\"")
        );
        assert_eq!(cursor_link("h", path, "", None), None);
    }
}
