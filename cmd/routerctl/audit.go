package main

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"slices"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/spf13/pflag"

	"github.com/msgrouter/msgrouter/internal/audit"
	"github.com/msgrouter/msgrouter/internal/config"
	"github.com/msgrouter/msgrouter/internal/stream"
)

// cmdAudit reconciles the ROUTER_MESSAGES stream with the router's records
// (DESIGN §10; the work is internal/audit). It talks to NATS and Postgres itself
// rather than through the router: an audit must not depend on the component it
// audits being up, nor trust its code beyond the shared id derivation, and it runs
// its reads on the operator's machine instead of a production replica. It reads
// only: a role with SELECT on messages and outbox is enough.
func cmdAudit(a *app, fs *pflag.FlagSet) runFunc {
	since := fs.Duration("since", audit.DefaultSince, "read the stream from this long ago (JetStream storage time; keep it below the router's MESSAGE_RETENTION, or purged records count as missing)")
	grace := fs.Duration("grace", audit.DefaultGrace, "a message younger than this without a record is not yet missing")
	threshold := fs.Duration("pending-threshold", audit.DefaultPendingThreshold, "report records PENDING for longer than this")
	chunk := fs.Int("chunk-size", audit.DefaultChunkSize, "stream messages checked per Postgres query (bounds memory)")
	maxListed := fs.Int("max-listed", audit.DefaultMaxListed, "list at most this many ids per category (counts stay exact)")
	// No default shown: the help must not print a password from DATABASE_URL.
	dbURL := fs.String("database-url", "", "Postgres `URL` of the router's records (env DATABASE_URL)")
	return func(ctx context.Context, args []string) error {
		switch {
		case *since <= 0:
			return usagef("--since must be positive")
		case *grace < 0:
			return usagef("--grace must not be negative")
		case *threshold <= 0:
			return usagef("--pending-threshold must be positive")
		case *chunk < 1 || *chunk > 1_000_000:
			return usagef("--chunk-size must be in [1, 1000000]")
		case *maxListed < 1:
			return usagef("--max-listed must be at least 1")
		}
		url, _, err := config.NormalizeDatabaseURL(cmp.Or(*dbURL, a.getenv("DATABASE_URL")))
		if err != nil {
			return usagef("--database-url: %v", err)
		}

		// The same credentials and TLS variables as the router (DESIGN §7).
		nc, err := stream.Connect(config.NATS{URL: a.g.natsURL, CredsFile: a.getenv("NATS_CREDS_FILE"), NKeyFile: a.getenv("NATS_NKEY_FILE"),
			TLSCA: a.getenv("NATS_TLS_CA"), TLSCert: a.getenv("NATS_TLS_CERT"), TLSKey: a.getenv("NATS_TLS_KEY")}, "routerctl-audit")
		if err != nil {
			return err
		}
		defer nc.Close()
		js, err := jetstream.New(nc)
		if err != nil {
			return fmt.Errorf("error opening JetStream: %w", err)
		}
		pc, err := pgxpool.ParseConfig(url)
		if err != nil {
			return usagef("--database-url: %v", err)
		}
		pc.MaxConns = 2
		pc.ConnConfig.RuntimeParams["application_name"] = "routerctl-audit"
		pool, err := pgxpool.NewWithConfig(ctx, pc)
		if err != nil {
			return fmt.Errorf("error connecting to Postgres at %s: %w", config.MaskDSN(url), err)
		}
		defer pool.Close()
		pctx, cancel := context.WithTimeout(ctx, a.g.timeout)
		err = pool.Ping(pctx)
		cancel()
		if err != nil {
			return fmt.Errorf("cannot reach Postgres at %s: %w", config.MaskDSN(url), err)
		}

		r, err := audit.Run(ctx, js, pool, audit.Config{Since: *since, Grace: *grace, PendingThreshold: *threshold,
			ChunkSize: *chunk, MaxListed: *maxListed})
		if err != nil {
			return err
		}
		if a.g.json {
			if err := a.printJSON(r); err != nil {
				return err
			}
		} else {
			a.printAudit(r)
		}
		if !r.OK() {
			return errReported
		}
		return nil
	}
}

func (a *app) printAudit(r *audit.Report) {
	w := a.stdout
	fmt.Fprintf(w, "audit of %s since %s (grace %s, pending threshold %s), took %s\n\n", r.Stream,
		r.Since.UTC().Format(time.RFC3339), r.Grace, r.PendingThreshold, r.FinishedAt.Sub(r.StartedAt).Round(time.Millisecond))
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	seqs := "-"
	if r.StreamMessages > 0 {
		seqs = fmt.Sprintf("%d..%d", r.FirstSequence, r.LastSequence)
	}
	fmt.Fprintf(tw, "stream messages read\t%d\t(sequences %s)\n", r.StreamMessages, seqs)
	statuses := make([]string, 0, len(r.ByStatus))
	for s := range r.ByStatus {
		statuses = append(statuses, s)
	}
	slices.Sort(statuses)
	for _, s := range statuses {
		fmt.Fprintf(tw, "  recorded %s\t%d\n", s, r.ByStatus[s])
	}
	fmt.Fprintf(tw, "  not recorded, within grace\t%d\n", r.InGrace)
	fmt.Fprintf(tw, "  MISSING\t%d\t(%d acked by the router's consumer)\n", r.Missing, r.MissingAcked)
	fmt.Fprintf(tw, "PENDING longer than %s\t%d\t(all records, not only the window)\n", r.PendingThreshold, r.StuckPending)
	fmt.Fprintf(tw, "held for inactive agents\t%d\n", r.Held)
	_ = tw.Flush()

	listTable(w, "missing messages (in the stream, unknown to Postgres)",
		"MESSAGE ID\tSEQUENCE\tACCEPTED AT\tSUBJECT\tACKED BY ROUTER", r.MissingIDs,
		func(tw io.Writer, m audit.Missing) {
			fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%v\n", m.MessageID, m.Sequence, fmtTime(&m.AcceptedAt), m.Subject, m.Acked)
		})
	listTable(w, "PENDING longer than the threshold", "MESSAGE ID\tAGENT\tREASON\tATTEMPTS\tACCEPTED AT", r.StuckIDs,
		func(tw io.Writer, s audit.Stuck) {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\n", s.MessageID, s.AIAgentAddress, cmp.Or(s.Reason, "-"), s.Attempts, fmtTime(&s.AcceptedAt))
		})
	if r.Truncated {
		fmt.Fprintln(w, "\n(lists cut at --max-listed; the counts are exact)")
	}
	fmt.Fprintln(w)
	if r.OK() {
		fmt.Fprintln(w, "OK: every message the stream accepted in the window is accounted for")
	} else {
		fmt.Fprintf(w, "GAP: %d accepted message(s) have no record\n", r.Missing)
	}
}

// listTable prints title and a table of items under header, one row each; nothing
// when there are no items.
func listTable[T any](w io.Writer, title, header string, items []T, row func(io.Writer, T)) {
	if len(items) == 0 {
		return
	}
	fmt.Fprintf(w, "\n%s:\n", title)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, header)
	for _, it := range items {
		row(tw, it)
	}
	_ = tw.Flush()
}
