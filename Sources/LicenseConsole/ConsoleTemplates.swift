/// The console's pages as Mustache templates. `{{name}}` is HTML-escaped (every text that came
/// from a client — user, host, feature names — goes through it); `{{{name}}}` is used only for
/// HTML the console itself rendered (a page body, an SVG chart).
enum ConsoleTemplates {
    static let all: [String: String] = [
        "layout": layout, "login": login, "dashboard": dashboard, "dashboard-live": dashboardLive, "feature": feature,
        "licences": licences, "server": server, "audit": audit, "activations": activations, "history": history, "reports": reports,
    ]

    static let layout = """
        <!doctype html>
        <html lang="en">
        <head>
        <meta charset="utf-8">
        <meta name="viewport" content="width=device-width, initial-scale=1">
        <title>{{title}} — licensed</title>
        <link rel="stylesheet" href="/static/console.css">
        <script src="/static/console.js" defer></script>
        </head>
        <body>
        <header>
        <a class="brand" href="/">licensed</a>
        {{#signedIn}}
        <nav><a href="/">Dashboard</a> <a href="/licences">Licences</a> <a href="/activations">Activations</a> <a href="/reports">Reports</a> <a href="/audit">Audit</a> <a href="/server">Server</a></nav>
        <form class="signout" method="post" action="/logout">
        <input type="hidden" name="csrf" value="{{csrf}}">
        <span class="who">{{actor}}</span> <button type="submit">Sign out</button>
        </form>
        {{/signedIn}}
        </header>
        <main>
        {{#notice}}<p class="notice" role="status">{{notice}}</p>{{/notice}}
        {{#problem}}<p class="problem" role="alert">{{problem}}</p>{{/problem}}
        {{{body}}}
        </main>
        </body>
        </html>
        """

    static let login = """
        <h1>Sign in</h1>
        <form method="post" action="/login" class="login">
        <label for="token">Access token (auditor, operator or admin)</label>
        <input id="token" name="token" type="password" autocomplete="current-password" required autofocus>
        <input type="hidden" name="next" value="{{next}}">
        <button type="submit" id="sign-in">Sign in</button>
        </form>
        """

    static let dashboard = """
        <h1>Dashboard</h1>
        <div id="live" data-live="1">{{{live}}}</div>
        """

    static let dashboardLive = """
        <section class="server">
        <h2>Server</h2>
        <dl>
        <dt>Readiness</dt><dd class="{{readyClass}}" id="readiness">{{readiness}}</dd>
        <dt>Version</dt><dd>{{version}}</dd>
        <dt>Sessions</dt><dd id="sessions">{{sessions}}</dd>
        {{#cluster}}<dt>Cluster role</dt><dd id="cluster-role">{{cluster}}</dd>{{/cluster}}
        {{#directory}}<dt>Directory</dt><dd id="directory" class="{{directoryClass}}">{{directory}}</dd>{{/directory}}
        <dt>Last snapshot</dt><dd id="last-snapshot">{{snapshot}}</dd>
        {{#auditSequence}}<dt>Audit trail head</dt><dd>record {{auditSequence}} <code>{{auditHash}}</code></dd>{{/auditSequence}}
        {{#clockSetback}}<dt>Clock</dt><dd class="bad">{{clockSetback}}</dd>{{/clockSetback}}
        </dl>
        </section>
        <section class="features">
        <h2>Features</h2>
        <table id="features">
        <thead><tr><th>Feature</th><th>In use</th><th>Seats</th><th></th><th>Queued</th><th>Denied (last hour)</th><th>Overage</th></tr></thead>
        <tbody>
        {{#features}}
        <tr data-feature="{{name}}">
        <td><a href="/features/{{path}}">{{name}}</a></td>
        <td class="in-use">{{inUse}}</td><td>{{capacity}}</td>
        <td><svg class="bar" viewBox="0 0 100 10" preserveAspectRatio="none" role="img" aria-label="{{percent}}% in use"><rect class="track" width="100" height="10"/><rect class="fill {{band}}" width="{{barWidth}}" height="10"/></svg></td>
        <td>{{queued}}</td><td class="denials">{{denials}}</td><td>{{overage}}</td>
        </tr>
        {{/features}}
        {{^features}}<tr><td colspan="7">No feature is licensed.</td></tr>{{/features}}
        </tbody>
        </table>
        </section>
        <section class="licences">
        <h2>Licences</h2>
        <table>
        <thead><tr><th>Licence</th><th>State</th><th>Expires</th><th>Model</th><th>Features</th></tr></thead>
        <tbody>
        {{#licences}}<tr data-licence="{{id}}"><td>{{id}}</td><td class="state {{stateClass}}">{{state}}</td><td>{{expires}}</td><td>{{model}}</td><td>{{features}}</td></tr>{{/licences}}
        {{#rejected}}<tr><td>{{file}} block {{block}}</td><td class="state bad">REJECTED</td><td></td><td></td><td>{{reason}}</td></tr>{{/rejected}}
        </tbody>
        </table>
        </section>
        """

    static let feature = """
        <h1>Feature <span id="feature-name">{{name}}</span></h1>
        <p>{{inUse}} of {{capacity}} seats in use{{#queuedCount}}, {{queuedCount}} waiting{{/queuedCount}}.</p>
        <form method="get" action="/features/{{path}}" class="filter">
        <label for="contains">User or host contains</label> <input id="contains" name="contains" value="{{contains}}">
        <button type="submit">Filter</button>
        </form>
        <h2>Holders ({{matched}})</h2>
        <table id="holders">
        <thead><tr><th>User</th><th>Host</th><th>Address</th><th>Since</th><th>Expires</th><th>Lease</th><th>Borrowed</th>{{#mayRevoke}}<th>Revoke</th>{{/mayRevoke}}</tr></thead>
        <tbody>
        {{#holders}}
        <tr data-lease="{{lease}}">
        <td class="user">{{user}}</td><td class="host">{{host}}</td><td class="address">{{address}}</td><td>{{since}}</td><td>{{expires}}</td><td><code>{{lease}}</code></td><td>{{borrowed}}</td>
        {{#mayRevoke}}<td>
        <form method="post" action="/features/{{path}}/revoke" class="revoke">
        <input type="hidden" name="csrf" value="{{csrf}}"><input type="hidden" name="lease" value="{{lease}}">
        <input name="reason" placeholder="reason told to the holder" aria-label="reason">
        <button type="submit" class="revoke-lease">Revoke</button>
        </form>
        <form method="post" action="/features/{{path}}/revoke" class="revoke-all">
        <input type="hidden" name="csrf" value="{{csrf}}"><input type="hidden" name="user" value="{{user}}">
        <input type="hidden" name="reason" value="">
        <button type="submit">All of {{user}}</button>
        </form>
        <form method="post" action="/features/{{path}}/revoke" class="revoke-all">
        <input type="hidden" name="csrf" value="{{csrf}}"><input type="hidden" name="host" value="{{host}}">
        <input type="hidden" name="reason" value="">
        <button type="submit">All of host {{host}}</button>
        </form>
        </td>{{/mayRevoke}}
        </tr>
        {{/holders}}
        {{^holders}}<tr><td colspan="8">Nobody holds a seat.</td></tr>{{/holders}}
        </tbody>
        </table>
        {{#next}}<p><a id="next-page" href="/features/{{path}}?after={{next}}&amp;contains={{containsQuery}}">Next {{pageSize}}</a></p>{{/next}}
        <h2>Waiting</h2>
        <table id="queue">
        <thead><tr><th>User</th><th>Host</th><th>Seats</th><th>Since</th><th>Gives up</th></tr></thead>
        <tbody>
        {{#queue}}<tr><td>{{user}}</td><td>{{host}}</td><td>{{count}}</td><td>{{since}}</td><td>{{deadline}}</td></tr>{{/queue}}
        {{^queue}}<tr><td colspan="5">Nobody waits.</td></tr>{{/queue}}
        </tbody>
        </table>
        """

    static let licences = """
        <h1>Licences</h1>
        <table id="licences">
        <thead><tr><th>Licence</th><th>State</th><th>Model</th><th>Licensee</th><th>Features</th><th>Valid</th><th>Policy</th><th>File</th></tr></thead>
        <tbody>
        {{#licences}}
        <tr data-licence="{{id}}"><td>{{id}}</td><td class="state {{stateClass}}">{{state}}</td><td>{{model}}</td><td>{{licensee}}{{#product}}<br>{{product}}{{/product}}</td>
        <td>{{features}}</td><td>{{valid}}{{#trial}}<br>trial: {{trial}}{{/trial}}{{#maintenance}}<br>maintenance until {{maintenance}}{{/maintenance}}</td><td>{{policy}}</td><td>{{file}}</td></tr>
        {{/licences}}
        {{^licences}}<tr><td colspan="8">No licence is in force.</td></tr>{{/licences}}
        </tbody>
        </table>
        <h2>Rejected blocks</h2>
        <table id="rejected">
        <thead><tr><th>File</th><th>Block</th><th>Licence</th><th>Reason</th></tr></thead>
        <tbody>
        {{#rejected}}<tr><td>{{file}}</td><td>{{block}}</td><td>{{licence}}</td><td>{{reason}}</td></tr>{{/rejected}}
        {{^rejected}}<tr><td colspan="4">None.</td></tr>{{/rejected}}
        </tbody>
        </table>
        """

    static let audit = """
        <h1>Audit trail</h1>
        <form method="get" action="/audit" class="filter">
        <label for="action">Action</label> <input id="action" name="action" value="{{action}}">
        <label for="actor">Actor contains</label> <input id="actor" name="actor" value="{{actorFilter}}">
        <button type="submit">Filter</button>
        <a id="verify" href="/audit?verify=1">Verify the hash chain</a>
        </form>
        {{#verification}}<p id="verification" class="{{verificationClass}}">{{verification}}</p>{{/verification}}
        <table id="audit">
        <thead><tr><th>Record</th><th>Time</th><th>Action</th><th>Actor</th><th>Subject</th><th>Details</th></tr></thead>
        <tbody>
        {{#records}}<tr data-action="{{action}}"><td>{{sequence}}</td><td>{{time}}</td><td>{{action}}</td><td>{{actor}}</td><td>{{subject}}</td><td><code>{{details}}</code></td></tr>{{/records}}
        {{^records}}<tr><td colspan="6">No record matches.</td></tr>{{/records}}
        </tbody>
        </table>
        <p>The newest {{limit}} matching records, newest first (from the newest files of {{directory}}).</p>
        """

    static let activations = """
        <h1>Activations</h1>
        <form method="get" action="/activations" class="filter">
        <label for="contains">Activation, part, device or user contains</label> <input id="contains" name="contains" value="{{contains}}">
        <button type="submit">Search</button>
        <a id="export" href="/activations.csv?contains={{containsQuery}}">Export CSV</a>
        <a href="/activations/history">Bulk runs</a>
        </form>
        <h2>Activations ({{matched}})</h2>
        <table id="activations">
        <thead><tr><th>Activation</th><th>Part</th><th>Device</th><th>User</th><th>Assigned</th><th>Last seen</th><th>Status</th>{{#mayChange}}<th>Deactivate</th>{{/mayChange}}</tr></thead>
        <tbody>
        {{#activations}}
        <tr data-activation="{{id}}"><td><code>{{id}}</code></td><td>{{part}}<br>{{partName}}</td><td class="device">{{device}}</td><td class="user">{{user}}</td><td>{{assigned}}</td><td>{{lastSeen}}</td><td class="{{statusClass}}">{{status}}</td>
        {{#mayChange}}<td>
        <form method="post" action="/activations/deactivate" class="deactivate">
        <input type="hidden" name="csrf" value="{{csrf}}"><input type="hidden" name="activation" value="{{id}}">
        <input name="reason" placeholder="reason" aria-label="reason">
        <button type="submit" class="deactivate">Deactivate</button>
        </form>
        </td>{{/mayChange}}
        </tr>
        {{/activations}}
        {{^activations}}<tr><td colspan="8">No activation matches.</td></tr>{{/activations}}
        </tbody>
        </table>
        {{#next}}<p><a id="next-page" href="/activations?after={{next}}&amp;contains={{containsQuery}}">Next {{pageSize}}</a></p>{{/next}}
        {{#mayChange}}
        <h2>Assign or revoke in bulk</h2>
        <form method="post" action="/activations/bulk" enctype="multipart/form-data" class="bulk" id="bulk">
        <input type="hidden" name="csrf" value="{{csrf}}">
        <label for="part">Part</label>
        <select id="part" name="part">{{#parts}}<option value="{{id}}">{{id}}</option>{{/parts}}</select>
        <label for="action">Action</label>
        <select id="action" name="action"><option value="assign">assign</option><option value="revoke">revoke</option></select>
        <label for="devices">Device list (CSV with a DeviceID or fingerprint column)</label>
        <input id="devices" name="devices" type="file" accept=".csv,text/csv" required>
        <button type="submit" id="bulk-run">Run</button>
        </form>
        {{/mayChange}}
        {{^mayChange}}<p>Deactivating and bulk runs need an operator or admin sign-in.</p>{{/mayChange}}
        """

    static let history = """
        <h1>Bulk runs</h1>
        <p><a href="/activations">Activations</a> · <a id="history-csv" href="/activations/history.csv">Every row as CSV</a></p>
        {{#run}}
        <h2 id="run-title">Run {{id}}: {{action}} {{part}} — {{applied}} applied, {{failed}} failed</h2>
        <table id="run-results">
        <thead><tr><th>Row</th><th>Device</th><th>Result</th><th>Reason</th><th>Activation</th></tr></thead>
        <tbody>
        {{#results}}<tr><td>{{row}}</td><td>{{device}}</td><td class="{{resultClass}}">{{result}}</td><td>{{reason}}</td><td><code>{{activation}}</code></td></tr>{{/results}}
        </tbody>
        </table>
        {{/run}}
        <h2>Every run</h2>
        <table id="runs">
        <thead><tr><th>Run</th><th>Time</th><th>Actor</th><th>Action</th><th>Part</th><th>Applied</th><th>Failed</th></tr></thead>
        <tbody>
        {{#runs}}<tr><td><a href="/activations/history?run={{idQuery}}">{{id}}</a></td><td>{{at}}</td><td>{{actor}}</td><td>{{action}}</td><td>{{part}}</td><td>{{applied}}</td><td>{{failed}}</td></tr>{{/runs}}
        {{^runs}}<tr><td colspan="7">No bulk run yet.</td></tr>{{/runs}}
        </tbody>
        </table>
        """

    static let reports = """
        <h1>Reports</h1>
        <form method="get" action="/reports" class="filter" id="report-form">
        <label for="from">From</label> <input id="from" name="from" type="date" value="{{from}}">
        <label for="to">To</label> <input id="to" name="to" type="date" value="{{to}}">
        <label for="by">Usage by</label>
        <select id="by" name="by">{{#groupings}}<option value="{{name}}"{{#selected}} selected{{/selected}}>{{name}}</option>{{/groupings}}</select>
        <label for="feature">Feature</label>
        <select id="feature" name="feature"><option value="">every feature</option>{{#features}}<option value="{{name}}"{{#selected}} selected{{/selected}}>{{name}}</option>{{/features}}</select>
        <label for="months">Forecast months</label> <input id="months" name="months" type="number" min="1" max="120" value="{{months}}">
        <button type="submit">Show</button>
        </form>
        <h2>Seats in use, {{subject}}</h2>
        <figure id="usage-chart">{{{chart}}}
        <figcaption>Most seats held at once (line) and on average (area) per interval{{#capacity}}, against the {{capacity}} licensed (dashed){{/capacity}}; peak <strong id="peak">{{peak}}</strong>{{#peakAt}} first at {{peakAt}}{{/peakAt}}. From {{records}} audit records. <a href="/reports/series?{{query}}">CSV</a></figcaption>
        </figure>
        <h2>Usage by {{grouping}} <a class="download" id="usage-csv" href="/reports/usage?{{query}}">CSV</a></h2>
        {{#usage}}<div class="wide"><table id="usage"><thead><tr>{{#columns}}<th>{{.}}</th>{{/columns}}</tr></thead><tbody>
        {{#rows}}<tr>{{#cells}}<td>{{.}}</td>{{/cells}}</tr>{{/rows}}
        {{#empty}}<tr><td>Nothing was used in this window.</td></tr>{{/empty}}
        </tbody></table></div>{{/usage}}
        <h2>Compliance <a class="download" id="compliance-csv" href="/reports/compliance?{{query}}">CSV</a></h2>
        {{#compliance}}<div class="wide"><table id="compliance"><thead><tr>{{#columns}}<th>{{.}}</th>{{/columns}}</tr></thead><tbody>
        {{#rows}}<tr>{{#cells}}<td>{{.}}</td>{{/cells}}</tr>{{/rows}}
        {{#empty}}<tr><td>No licence was in force.</td></tr>{{/empty}}
        </tbody></table></div>{{/compliance}}
        <h2>Forecast, {{months}} months ahead <a class="download" id="forecast-csv" href="/reports/forecast?{{query}}">CSV</a></h2>
        {{#forecast}}<div class="wide"><table id="forecast"><thead><tr>{{#columns}}<th>{{.}}</th>{{/columns}}</tr></thead><tbody>
        {{#rows}}<tr>{{#cells}}<td>{{.}}</td>{{/cells}}</tr>{{/rows}}
        {{#empty}}<tr><td>Nothing to forecast.</td></tr>{{/empty}}
        </tbody></table></div>{{/forecast}}
        """

    static let server = """
        <h1>Server</h1>
        <dl>
        <dt>Readiness</dt><dd class="{{readyClass}}">{{readiness}}</dd>
        <dt>Version</dt><dd>{{version}}</dd>
        <dt>Server key</dt><dd><code>{{serverKey}}</code></dd>
        </dl>
        {{#mayOperate}}
        <form method="post" action="/server/reload" class="action">
        <input type="hidden" name="csrf" value="{{csrf}}">
        <button type="submit" id="reload">Reload licences</button> rereads the licence files, as SIGHUP; every lease stays.
        </form>
        <form method="post" action="/server/snapshot" class="action">
        <input type="hidden" name="csrf" value="{{csrf}}">
        <button type="submit" id="snapshot">Take a snapshot</button> writes the ledger's snapshot now.
        </form>
        {{/mayOperate}}
        {{^mayOperate}}<p>Reloading licences and taking snapshots need an operator or admin sign-in.</p>{{/mayOperate}}
        """

    static let css = """
        body { font-family: system-ui, sans-serif; margin: 0; color: #1b1f24; background: #f6f7f9; }
        header { display: flex; align-items: center; gap: 1.5rem; padding: .6rem 1.2rem; background: #1f2d3d; color: #fff; }
        header a { color: #fff; text-decoration: none; }
        header .brand { font-weight: 700; }
        header nav a { margin-right: 1.2rem; }
        header .signout { margin-left: auto; }
        main { padding: 1rem 1.2rem; max-width: 72rem; }
        table { border-collapse: collapse; width: 100%; background: #fff; margin-bottom: 1.5rem; }
        th, td { text-align: left; padding: .35rem .6rem; border-bottom: 1px solid #e3e6ea; vertical-align: top; }
        svg.bar { width: 12rem; height: .8rem; }
        svg.bar .track { fill: #e3e6ea; }
        svg.bar .fill.low { fill: #6c9bd2; }
        svg.bar .fill.normal { fill: #3c8d5a; }
        svg.bar .fill.high { fill: #c9822b; }
        svg.bar .fill.full { fill: #b8332f; }
        .bad { color: #b8332f; font-weight: 600; }
        .good { color: #3c8d5a; }
        .warn { color: #c9822b; font-weight: 600; }
        .notice { background: #e6f3ea; padding: .5rem .8rem; }
        .problem { background: #fbe9e8; padding: .5rem .8rem; }
        form.revoke, form.revoke-all { display: inline-block; margin: 0 .3rem .2rem 0; }
        code { font-size: .85em; }
        .wide { overflow-x: auto; }
        form.filter label, form.bulk label { margin-left: .6rem; }
        form.deactivate { display: inline-block; }
        figure { margin: 0 0 1.5rem; background: #fff; padding: .6rem; }
        svg.chart { width: 100%; max-width: 60rem; height: auto; }
        svg.chart .grid { stroke: #e3e6ea; stroke-width: 1; }
        svg.chart .axis { font-size: 11px; fill: #5a6470; }
        svg.chart .average { fill: #6c9bd2; fill-opacity: .35; stroke: none; }
        svg.chart .peak { fill: none; stroke: #1f5fa8; stroke-width: 1.5; }
        svg.chart .capacity { stroke: #b8332f; stroke-width: 1.5; stroke-dasharray: 6 4; }
        svg.chart .capacity-label { font-size: 11px; fill: #b8332f; }
        svg.chart .peak-mark { fill: #c9822b; }
        svg.chart .peak-label { font-size: 11px; fill: #1b1f24; }
        td code { word-break: break-all; }
        """

    static let javascript = """
        // Refreshes the part of a page marked data-live every 5 s without reloading the page.
        (function () {
          var live = document.querySelector('[data-live]');
          if (!live) return;
          setInterval(function () {
            var url = location.pathname + (location.search ? location.search + '&' : '?') + 'fragment=1';
            fetch(url, { credentials: 'same-origin' })
              .then(function (response) { return response.ok ? response.text() : null; })
              .then(function (html) { if (html !== null) live.innerHTML = html; })
              .catch(function () {});
          }, 5000);
        })();
        """
}
