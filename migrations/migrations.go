// Package migrations embeds the numbered SQL migrations: router/ for the router's
// message records and outbox, cams/ for the reference CAMS registry. Files are named
// NNNN_description.sql and applied in order, each once, by internal/migrate.
package migrations

import "embed"

// FS holds router/*.sql and cams/*.sql.
//
//go:embed router/*.sql cams/*.sql
var FS embed.FS
