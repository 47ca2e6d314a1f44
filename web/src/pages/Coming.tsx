import { Page } from "../common";

// Coming holds a page's place in the navigation until its API exists. It
// shows no data: there is none to show yet.
export function Coming({ title, waitsFor }: { title: string; waitsFor: string }) {
  return (
    <Page title={title}>
      <div className="placeholder" data-testid="coming">
        <p>
          <strong>Coming.</strong> This page waits for {waitsFor}.
        </p>
        <p className="muted">Until then, the Policy, Inventory, Hosts and History pages show what the manager knows.</p>
      </div>
    </Page>
  );
}
