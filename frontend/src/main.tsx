import { render } from "preact";
import { useEffect, useState } from "preact/hooks";
import { serverInfo, token } from "./api";
import { LineagePage } from "./lineage";
import { DeploymentPage, DeploymentsPage, MonitoringPage } from "./operations";
import { DatasetDiffPage, DatasetPage, DatasetsPage, DatasetVersionPage, ModelPage, ModelsPage } from "./registry";
import { href, Route, useRoute } from "./router";
import { ComparePage, RunPage, RunsPage } from "./runs";
import "./style.css";

const NAV: [string, string][] = [
  ["runs", "Runs"],
  ["datasets", "Datasets"],
  ["models", "Registry"],
  ["deployments", "Deployments"],
  ["monitoring", "Monitoring"],
];

function TokenForm(props: { onDone: () => void; failed: boolean }) {
  const [value, setValue] = useState("");
  return (
    <form
      class="token panel"
      onSubmit={(e) => {
        e.preventDefault();
        token.set(value);
        props.onDone();
      }}
    >
      <h2>Sign in</h2>
      <p>
        Paste an API token (<code>modelyard tokens create NAME --role read</code>). It stays in this tab only.
      </p>
      {props.failed && <p class="error">That token was refused (invalid, expired or revoked).</p>}
      <input type="password" name="token" placeholder="token" value={value} onInput={(e) => setValue(e.currentTarget.value)} autoFocus />
      <button type="submit">open dashboard</button>
    </form>
  );
}

function Page(props: { route: Route }) {
  const [first, a, b] = props.route.parts;
  const r = props.route;
  switch (first ?? "runs") {
    case "runs":
      return a ? <RunPage id={a} /> : <RunsPage route={r} />;
    case "compare":
      return <ComparePage route={r} />;
    case "datasets":
      if (a && b === "diff") return <DatasetDiffPage name={a} route={r} />;
      if (a && b) return <DatasetVersionPage name={a} version={b} />;
      return a ? <DatasetPage name={a} route={r} /> : <DatasetsPage />;
    case "models":
      return a ? <ModelPage name={a} route={r} /> : <ModelsPage />;
    case "deployments":
      return a ? <DeploymentPage name={a} /> : <DeploymentsPage />;
    case "monitoring":
      return <MonitoringPage route={r} />;
    case "lineage":
      return a && b ? <LineagePage type={a} id={r.parts.slice(2).join("/")} /> : <p>Open lineage from a run, dataset, model or deployment.</p>;
    default:
      return <p>No page {first}.</p>;
  }
}

function App() {
  const route = useRoute();
  const [needToken, setNeedToken] = useState<boolean | null>(null);
  const [refused, setRefused] = useState(false);
  const [generation, setGeneration] = useState(0);
  useEffect(() => {
    serverInfo()
      .then((info) => setNeedToken(info.auth && !token.get()))
      .catch(() => setNeedToken(!token.get()));
    const onAuth = () => {
      token.clear();
      setRefused(true);
      setNeedToken(true);
    };
    addEventListener("modelyard:auth", onAuth);
    return () => removeEventListener("modelyard:auth", onAuth);
  }, []);
  const section = route.parts[0] ?? "runs";
  return (
    <>
      <header>
        <a class="brand" href={href(["runs"])}>
          modelyard
        </a>
        <nav>
          {NAV.map(([key, title]) => (
            <a href={href([key])} class={section === key ? "active" : ""}>
              {title}
            </a>
          ))}
        </nav>
        {token.get() && (
          <button
            class="link"
            onClick={() => {
              token.clear();
              setRefused(false);
              setNeedToken(true);
            }}
          >
            sign out
          </button>
        )}
      </header>
      <main key={generation}>
        {needToken === null ? null : needToken ? (
          <TokenForm
            failed={refused}
            onDone={() => {
              setRefused(false);
              setNeedToken(false);
              setGeneration((g) => g + 1);
            }}
          />
        ) : (
          <Page route={route} />
        )}
      </main>
    </>
  );
}

render(<App />, document.getElementById("app")!);
