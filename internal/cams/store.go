package cams

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// ErrNotFound: no agent is registered under the address.
var ErrNotFound = errors.New("agent not found")

// ErrExists: an agent is already registered under the address.
var ErrExists = errors.New("agent already registered")

// Store keeps the reference CAMS registry in Postgres (table agent_inboxes,
// migrations/cams). Timestamps come from the database clock, truncated to
// milliseconds so what a write answers equals what a later read returns.
type Store struct {
	pool *pgxpool.Pool
}

// NewStore returns a Store on pool.
func NewStore(pool *pgxpool.Pool) *Store { return &Store{pool: pool} }

// Ping checks Postgres answers (readiness).
func (s *Store) Ping(ctx context.Context) error { return s.pool.Ping(ctx) }

const columns = `ai_agent_address, inbox_destination_type, inbox_name, status, description,
	owner_team, updated_by, signing_secrets, registration_timestamp, last_updated_timestamp,
	health_status, health_details, last_health_at, inactive_by_health`

func scanMapping(row pgx.Row) (Mapping, error) {
	var (
		m             Mapping
		healthStatus  *string
		healthDetails *string
		healthAt      *time.Time
		byHealth      bool
	)
	err := row.Scan(&m.AIAgentAddress, &m.InboxDestinationType, &m.InboxName, &m.Status, &m.Description,
		&m.OwnerTeam, &m.UpdatedBy, &m.SigningSecrets, &m.RegistrationTimestamp, &m.LastUpdatedTimestamp,
		&healthStatus, &healthDetails, &healthAt, &byHealth)
	if err != nil {
		return Mapping{}, err
	}
	m.RegistrationTimestamp = m.RegistrationTimestamp.UTC()
	m.LastUpdatedTimestamp = m.LastUpdatedTimestamp.UTC()
	if len(m.SigningSecrets) == 0 {
		m.SigningSecrets = nil
	}
	if healthStatus != nil {
		m.Health = &Health{Status: *healthStatus, InactiveByHealthCheck: byHealth}
		if healthDetails != nil {
			m.Health.Details = *healthDetails
		}
		if healthAt != nil {
			m.Health.ReportedAt = healthAt.UTC()
		}
	}
	return m, nil
}

// Get returns the mapping of address, or ErrNotFound.
func (s *Store) Get(ctx context.Context, address string) (Mapping, error) {
	m, err := scanMapping(s.pool.QueryRow(ctx, `SELECT `+columns+` FROM agent_inboxes WHERE ai_agent_address = $1`, address))
	if errors.Is(err, pgx.ErrNoRows) {
		return Mapping{}, ErrNotFound
	}
	if err != nil {
		return Mapping{}, fmt.Errorf("error reading agent: %w", err)
	}
	return m, nil
}

// Create registers m (validated by the caller), or returns ErrExists. Timestamps
// are set to now; health starts empty.
func (s *Store) Create(ctx context.Context, m Mapping) (Mapping, error) {
	secrets := m.SigningSecrets
	if secrets == nil {
		secrets = []string{}
	}
	out, err := scanMapping(s.pool.QueryRow(ctx, `
		INSERT INTO agent_inboxes (ai_agent_address, inbox_destination_type, inbox_name, status,
			description, owner_team, updated_by, signing_secrets, registration_timestamp, last_updated_timestamp)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, date_trunc('milliseconds', now()), date_trunc('milliseconds', now()))
		RETURNING `+columns,
		m.AIAgentAddress, m.InboxDestinationType, m.InboxName, m.Status, m.Description, m.OwnerTeam, m.UpdatedBy, secrets))
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "23505" { // unique_violation
		return Mapping{}, ErrExists
	}
	if err != nil {
		return Mapping{}, fmt.Errorf("error creating agent: %w", err)
	}
	return out, nil
}

// Patch is a partial update: nil fields stay as they are.
type Patch struct {
	InboxDestinationType *string
	InboxName            *string
	Status               *string
	Description          *string
	OwnerTeam            *string
	UpdatedBy            *string
	SigningSecrets       *[]string
}

func (p Patch) apply(m *Mapping) {
	set := func(dst *string, v *string) {
		if v != nil {
			*dst = *v
		}
	}
	set(&m.InboxDestinationType, p.InboxDestinationType)
	set(&m.InboxName, p.InboxName)
	set(&m.Status, p.Status)
	set(&m.Description, p.Description)
	set(&m.OwnerTeam, p.OwnerTeam)
	set(&m.UpdatedBy, p.UpdatedBy)
	if p.SigningSecrets != nil {
		m.SigningSecrets = *p.SigningSecrets
	}
}

// Update applies p to the mapping of address and stores the result if it still
// validates (else a *ValidationError); ErrNotFound for an unknown address. The row
// is locked for the read-modify-write, so concurrent partial updates of different
// fields both land. lastUpdatedTimestamp always moves forward, by at least a
// millisecond, so it can serve as the mapping's version. An update that sets status is an admin's decision: it ends any
// health-check deactivation, so a later HEALTHY report will not override it.
func (s *Store) Update(ctx context.Context, address string, p Patch) (Mapping, error) {
	var out Mapping
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		m, err := scanMapping(tx.QueryRow(ctx, `SELECT `+columns+` FROM agent_inboxes WHERE ai_agent_address = $1 FOR UPDATE`, address))
		if errors.Is(err, pgx.ErrNoRows) {
			return ErrNotFound
		}
		if err != nil {
			return fmt.Errorf("error reading agent: %w", err)
		}
		p.apply(&m)
		if err := m.Validate(); err != nil {
			return err
		}
		secrets := m.SigningSecrets
		if secrets == nil {
			secrets = []string{}
		}
		out, err = scanMapping(tx.QueryRow(ctx, `
			UPDATE agent_inboxes SET inbox_destination_type = $2, inbox_name = $3, status = $4,
				description = $5, owner_team = $6, updated_by = $7, signing_secrets = $8,
				inactive_by_health = inactive_by_health AND NOT $9,
				last_updated_timestamp = greatest(date_trunc('milliseconds', now()), last_updated_timestamp + interval '1 millisecond')
			WHERE ai_agent_address = $1
			RETURNING `+columns,
			address, m.InboxDestinationType, m.InboxName, m.Status, m.Description, m.OwnerTeam, m.UpdatedBy, secrets,
			p.Status != nil))
		if err != nil {
			return fmt.Errorf("error updating agent: %w", err)
		}
		return nil
	})
	return out, err
}

// Delete removes the mapping of address, or returns ErrNotFound.
func (s *Store) Delete(ctx context.Context, address string) error {
	tag, err := s.pool.Exec(ctx, `DELETE FROM agent_inboxes WHERE ai_agent_address = $1`, address)
	if err != nil {
		return fmt.Errorf("error deleting agent: %w", err)
	}
	if tag.RowsAffected() == 0 {
		return ErrNotFound
	}
	return nil
}

// List returns up to limit mappings with addresses after the address after ("" =
// from the start), in address byte order, and whether more follow.
func (s *Store) List(ctx context.Context, after string, limit int) ([]Mapping, bool, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+columns+` FROM agent_inboxes
		WHERE ai_agent_address > $1 ORDER BY ai_agent_address LIMIT $2`, after, limit+1)
	if err != nil {
		return nil, false, fmt.Errorf("error listing agents: %w", err)
	}
	items, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Mapping, error) { return scanMapping(r) })
	if err != nil {
		return nil, false, fmt.Errorf("error listing agents: %w", err)
	}
	if len(items) > limit {
		return items[:limit], true, nil
	}
	return items, false, nil
}

// HealthReport is one POST /v1/agent-health-check.
type HealthReport struct {
	Address string
	Status  string     // HEALTHY or UNHEALTHY
	Details string     // optional
	At      *time.Time // when the agent was checked; nil = now
}

// ReportHealth records a health report and returns the mapping after it. UNHEALTHY
// makes an ACTIVE agent INACTIVE (remembering that a health check did it); HEALTHY
// makes ACTIVE again only an agent a health check had made INACTIVE, never one an
// admin set INACTIVE. A report older than the last one recorded (reports arriving out
// of order) is acknowledged but changes nothing. previous is the status before the
// report.
func (s *Store) ReportHealth(ctx context.Context, r HealthReport) (out Mapping, previous string, err error) {
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		m, err := scanMapping(tx.QueryRow(ctx, `SELECT `+columns+` FROM agent_inboxes WHERE ai_agent_address = $1 FOR UPDATE`, r.Address))
		if errors.Is(err, pgx.ErrNoRows) {
			return ErrNotFound
		}
		if err != nil {
			return fmt.Errorf("error reading agent: %w", err)
		}
		previous = m.Status
		if r.At != nil && m.Health != nil && r.At.Before(m.Health.ReportedAt) {
			out = m
			return nil
		}
		out, err = scanMapping(tx.QueryRow(ctx, `
			UPDATE agent_inboxes SET
				health_status = $2,
				health_details = nullif($3, ''),
				last_health_at = coalesce($4, date_trunc('milliseconds', now())),
				status = CASE
					WHEN $2 = 'UNHEALTHY' THEN 'INACTIVE'
					WHEN inactive_by_health THEN 'ACTIVE'
					ELSE status END,
				inactive_by_health = CASE
					WHEN $2 = 'UNHEALTHY' THEN inactive_by_health OR status = 'ACTIVE'
					ELSE false END,
				updated_by = CASE
					WHEN ($2 = 'UNHEALTHY' AND status = 'ACTIVE') OR ($2 = 'HEALTHY' AND inactive_by_health) THEN 'health-check'
					ELSE updated_by END,
				last_updated_timestamp = CASE
					WHEN ($2 = 'UNHEALTHY' AND status = 'ACTIVE') OR ($2 = 'HEALTHY' AND inactive_by_health)
					THEN greatest(date_trunc('milliseconds', now()), last_updated_timestamp + interval '1 millisecond')
					ELSE last_updated_timestamp END
			WHERE ai_agent_address = $1
			RETURNING `+columns, r.Address, r.Status, r.Details, r.At))
		if err != nil {
			return fmt.Errorf("error recording health report: %w", err)
		}
		return nil
	})
	return out, previous, err
}
