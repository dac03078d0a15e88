//! Draws a [`DashboardView`] with ratatui; no I/O, so tests render it into
//! a `TestBackend`.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Cell, Paragraph, Row, Sparkline, Table};

use super::model::DashboardView;

/// Seconds as a short latency: `850µs`, `12.3ms`, `1.20s`, `-` when unknown.
pub fn latency(seconds: Option<f64>) -> String {
    match seconds {
        None => "-".into(),
        Some(s) if s < 0.001 => format!("{:.0}µs", s * 1e6),
        Some(s) if s < 1.0 => format!("{:.1}ms", s * 1e3),
        Some(s) => format!("{s:.2}s"),
    }
}

fn percent(r: Option<f64>) -> String {
    r.map_or_else(|| "-".into(), |r| format!("{:.2}%", r * 100.0))
}

fn rate(r: Option<f64>) -> String {
    r.map_or_else(|| "-".into(), |r| format!("{r:.1}/s"))
}

fn health_style(health: &str) -> Style {
    let color = match health {
        "ok" => Color::Green,
        "unhealthy" => Color::Yellow,
        _ => Color::Red,
    };
    Style::default().fg(color).add_modifier(Modifier::BOLD)
}

/// Draws the whole dashboard into the frame.
pub fn render(frame: &mut Frame, view: &DashboardView) {
    let [header, figures, spark, tables, footer] = Layout::vertical([
        Constraint::Length(3),
        Constraint::Length(4),
        Constraint::Length(5),
        Constraint::Min(4),
        Constraint::Length(1),
    ])
    .areas(frame.area());

    render_header(frame, header, view);
    render_figures(frame, figures, view);

    let spark_widget = Sparkline::default()
        .block(Block::bordered().title(" Request rate (req/s) "))
        .data(&view.rate_history)
        .style(Style::default().fg(Color::Cyan));
    frame.render_widget(spark_widget, spark);

    let [routes, functions] =
        Layout::horizontal([Constraint::Percentage(55), Constraint::Percentage(45)]).areas(tables);
    render_routes(frame, routes, view);
    render_functions(frame, functions, view);

    let footer_text = match &view.last_error {
        Some(err) => Line::from(vec![
            Span::styled("refresh failed: ", Style::default().fg(Color::Red)),
            Span::raw(err.clone()),
        ]),
        None => Line::from(" q / Esc / Ctrl-C: quit · refreshes every second"),
    };
    frame.render_widget(Paragraph::new(footer_text), footer);
}

fn render_header(frame: &mut Frame, area: Rect, view: &DashboardView) {
    let dev = match view.dev_mode {
        Some(true) => Span::styled(
            "DEV MODE (no auth)",
            Style::default().fg(Color::Red).add_modifier(Modifier::BOLD),
        ),
        Some(false) => Span::raw("auth on"),
        None => Span::raw("auth ?"),
    };
    let line = Line::from(vec![
        Span::raw(" health: "),
        Span::styled(view.health.clone(), health_style(&view.health)),
        Span::raw(format!("   version: {}", view.version)),
        Span::raw(format!("   gpu: {}", view.gpu_backend)),
        Span::raw("   "),
        dev,
        Span::raw(format!("   functions: {}", view.functions.len())),
    ]);
    let block = Block::bordered().title(format!(" tensor-wasm observe — {} ", view.server));
    frame.render_widget(Paragraph::new(line).block(block), area);
}

fn render_figures(frame: &mut Frame, area: Rect, view: &DashboardView) {
    let q = &view.invoke_latency;
    let lines = vec![
        Line::from(format!(
            " requests: {}   errors (5xx): {}   invokes: {}   invoke errors: {}",
            rate(view.request_rate),
            percent(view.error_rate),
            rate(view.invoke_rate),
            percent(view.invoke_error_rate),
        )),
        Line::from(format!(
            " invoke p50: {}   p95: {}   p99: {}   GPU dispatch p95: {}",
            latency(q.p50),
            latency(q.p95),
            latency(q.p99),
            latency(view.gpu_dispatch_p95),
        )),
    ];
    let totals = &view.totals;
    let title = format!(
        " Traffic — totals: {} requests, {} invocations, {} GPU dispatches ",
        totals.requests_total, totals.invocations_total, totals.gpu_dispatch_total
    );
    frame.render_widget(
        Paragraph::new(lines).block(Block::bordered().title(title)),
        area,
    );
}

fn render_routes(frame: &mut Frame, area: Rect, view: &DashboardView) {
    let rows = view.top_routes.iter().map(|r| {
        Row::new(vec![
            Cell::from(r.route.clone()),
            Cell::from(format!("{:.1}", r.per_sec)),
            Cell::from(format!("{}", r.total)),
        ])
    });
    let table = Table::new(
        rows,
        [
            Constraint::Min(20),
            Constraint::Length(8),
            Constraint::Length(10),
        ],
    )
    .header(
        Row::new(vec!["route", "req/s", "total"])
            .style(Style::default().add_modifier(Modifier::BOLD)),
    )
    .block(Block::bordered().title(" Top routes "));
    frame.render_widget(table, area);
}

fn render_functions(frame: &mut Frame, area: Rect, view: &DashboardView) {
    let rows = view.functions.iter().map(|f| {
        Row::new(vec![
            Cell::from(f.name.clone()),
            Cell::from(f.tenant.clone()),
            Cell::from(f.id.clone()),
        ])
    });
    let table = Table::new(
        rows,
        [
            Constraint::Length(16),
            Constraint::Length(8),
            Constraint::Min(10),
        ],
    )
    .header(
        Row::new(vec!["name", "tenant", "id"]).style(Style::default().add_modifier(Modifier::BOLD)),
    )
    .block(Block::bordered().title(format!(" Functions ({}) ", view.functions.len())));
    frame.render_widget(table, area);
}

#[cfg(test)]
mod tests {
    use ratatui::Terminal;
    use ratatui::backend::TestBackend;

    use super::super::model::{FunctionItem, RouteRate};
    use super::*;
    use tensor_wasm_client::metrics::Quantiles;

    fn buffer_text(view: &DashboardView, width: u16, height: u16) -> String {
        let mut terminal = Terminal::new(TestBackend::new(width, height)).expect("test terminal");
        terminal.draw(|f| render(f, view)).expect("draw");
        let buffer = terminal.backend().buffer();
        let mut text = String::new();
        for y in 0..buffer.area.height {
            for x in 0..buffer.area.width {
                text.push_str(buffer[(x, y)].symbol());
            }
            text.push('\n');
        }
        text
    }

    #[test]
    fn renders_the_key_figures() {
        let view = DashboardView {
            server: "http://127.0.0.1:8080".into(),
            health: "ok".into(),
            version: "v0.1.0".into(),
            gpu_backend: "cpu".into(),
            dev_mode: Some(false),
            request_rate: Some(42.0),
            error_rate: Some(0.01),
            invoke_rate: Some(12.5),
            invoke_error_rate: Some(0.0),
            invoke_latency: Quantiles {
                p50: Some(0.0004),
                p95: Some(0.0123),
                p99: Some(1.5),
            },
            gpu_dispatch_p95: Some(0.002),
            top_routes: vec![RouteRate {
                route: "POST /functions/{id}/invoke".into(),
                per_sec: 12.5,
                total: 300.0,
            }],
            functions: vec![FunctionItem {
                id: "fn_abc".into(),
                name: "adder".into(),
                tenant: "7".into(),
            }],
            rate_history: vec![1, 5, 42],
            ..Default::default()
        };
        let text = buffer_text(&view, 120, 30);
        for needle in [
            "health: ok",
            "version: v0.1.0",
            "gpu: cpu",
            "auth on",
            "requests: 42.0/s",
            "errors (5xx): 1.00%",
            "invoke p50: 400µs",
            "p95: 12.3ms",
            "p99: 1.50s",
            "GPU dispatch p95: 2.0ms",
            "POST /functions/{id}/invoke",
            "adder",
            "fn_abc",
            "Functions (1)",
            "q / Esc / Ctrl-C: quit",
        ] {
            assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
        }
    }

    #[test]
    fn renders_an_unreachable_server_and_dev_mode() {
        let view = DashboardView {
            server: "http://nowhere:1".into(),
            health: "unreachable".into(),
            version: "?".into(),
            gpu_backend: "?".into(),
            dev_mode: Some(true),
            last_error: Some("connection refused".into()),
            ..Default::default()
        };
        let text = buffer_text(&view, 100, 24);
        assert!(text.contains("health: unreachable"), "{text}");
        assert!(text.contains("DEV MODE"), "{text}");
        assert!(
            text.contains("refresh failed: connection refused"),
            "{text}"
        );
        assert!(text.contains("invoke p50: -"), "{text}");
    }

    #[test]
    fn latency_formats() {
        assert_eq!(latency(None), "-");
        assert_eq!(latency(Some(0.00005)), "50µs");
        assert_eq!(latency(Some(0.25)), "250.0ms");
        assert_eq!(latency(Some(2.0)), "2.00s");
    }
}
