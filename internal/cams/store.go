package cams

import (
	"context"
	"encoding/json"
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
//
// Secrets (signingSecrets, inboxAuth) are sealed with the Store's SecretBox when it
// has one (CAMS_SECRETS_KEY): Postgres then holds only ciphertext, each value with
// its key id. Without one they are stored in plain text.
type Store struct {
	pool *pgxpool.Pool
	box  *SecretBox
}

// StoreOption configures a Store.
type StoreOption func(*Store)

// WithSecretBox seals secrets at rest with box (nil = plain text).
func WithSecretBox(box *SecretBox) StoreOption { return func(s *Store) { s.box = box } }

// NewStore returns a Store on pool.
func NewStore(pool *pgxpool.Pool, opts ...StoreOption) *Store {
	s := &Store{pool: pool}
	for _, o := range opts {
		o(s)
	}
	return s
}

// Ping checks Postgres answers (readiness).
func (s *Store) Ping(ctx context.Context) error { return s.pool.Ping(ctx) }

const columns = `ai_agent_address, inbox_destination_type, inbox_name, status, description,
	owner_team, updated_by, signing_secrets, registration_timestamp, last_updated_timestamp,
	health_status, health_details, last_health_at, inactive_by_health, inactive_policy, inbox_auth`

// Field names bound into each sealed value (see SecretBox).
const (
	fieldSigningSecret = "signingSecrets"
	fieldInboxAuth     = "inboxAuth"
)

func (s *Store) scanMapping(row pgx.Row) (Mapping, error) {
	var (
		m             Mapping
		healthStatus  *string
		healthDetails *string
		healthAt      *time.Time
		byHealth      bool
		inboxAuth     *string
	)
	err := row.Scan(&m.AIAgentAddress, &m.InboxDestinationType, &m.InboxName, &m.Status, &m.Description,
		&m.OwnerTeam, &m.UpdatedBy, &m.SigningSecrets, &m.RegistrationTimestamp, &m.LastUpdatedTimestamp,
		&healthStatus, &healthDetails, &healthAt, &byHealth, &m.InactivePolicy, &inboxAuth)
	if err != nil {
		return Mapping{}, err
	}
	for i, v := range m.SigningSecrets {
		if m.SigningSecrets[i], err = s.box.Open(v, m.AIAgentAddress, fieldSigningSecret); err != nil {
			return Mapping{}, err
		}
	}
	if inboxAuth != nil && *inboxAuth != "" {
		plain, err := s.box.Open(*inboxAuth, m.AIAgentAddress, fieldInboxAuth)
		if err != nil {
			return Mapping{}, err
		}
		m.InboxAuth = &InboxAuth{}
		if err := json.Unmarshal([]byte(plain), m.InboxAuth); err != nil {
			return Mapping{}, fmt.Errorf("stored inboxAuth of agent %q is not JSON", m.AIAgentAddress)
		}
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
	m, err := s.scanMapping(s.pool.QueryRow(ctx, `SELECT `+columns+` FROM agent_inboxes WHERE ai_agent_address = $1`, address))
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
	secrets, auth, err := s.seal(m)
	if err != nil {
		return Mapping{}, err
	}
	out, err := s.scanMapping(s.pool.QueryRow(ctx, `
		INSERT INTO agent_inboxes (ai_agent_address, inbox_destination_type, inbox_name, status,
			description, owner_team, updated_by, signing_secrets, registration_timestamp, last_updated_timestamp,
			inactive_policy, inbox_auth)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, date_trunc('milliseconds', now()), date_trunc('milliseconds', now()), $9, $10)
		RETURNING `+columns,
		m.AIAgentAddress, m.InboxDestinationType, m.InboxName, m.Status, m.Description, m.OwnerTeam, m.UpdatedBy, secrets,
		m.InactivePolicy, auth))
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
	InactivePolicy       *string
	// SigningSecrets replaces the secrets; an element Masked keeps the stored
	// secret at that position (writing back what GET showed changes nothing).
	SigningSecrets *[]string
	// InboxAuth replaces the credentials; a secret field Masked keeps the stored
	// one when the type is the same. ClearInboxAuth removes them.
	InboxAuth      *InboxAuth
	ClearInboxAuth bool
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
	set(&m.InactivePolicy, p.InactivePolicy)
	if p.SigningSecrets != nil {
		secrets := append([]string(nil), (*p.SigningSecrets)...)
		for i, v := range secrets {
			if v == Masked && i < len(m.SigningSecrets) {
				secrets[i] = m.SigningSecrets[i]
			}
		}
		m.SigningSecrets = secrets
	}
	switch {
	case p.ClearInboxAuth:
		m.InboxAuth = nil
	case p.InboxAuth != nil:
		a := *p.InboxAuth
		a.keepMasked(m.InboxAuth)
		m.InboxAuth = &a
	}
}

// seal returns m's secrets as stored: signing secrets and the inboxAuth JSON,
// sealed when the Store has a SecretBox.
func (s *Store) seal(m Mapping) (secrets []string, auth *string, err error) {
	secrets = make([]string, len(m.SigningSecrets))
	for i, v := range m.SigningSecrets {
		if secrets[i], err = s.box.Seal(v, m.AIAgentAddress, fieldSigningSecret); err != nil {
			return nil, nil, err
		}
	}
	if m.InboxAuth != nil {
		j, err := json.Marshal(m.InboxAuth)
		if err != nil {
			return nil, nil, err
		}
		sealed, err := s.box.Seal(string(j), m.AIAgentAddress, fieldInboxAuth)
		if err != nil {
			return nil, nil, err
		}
		auth = &sealed
	}
	return secrets, auth, nil
}

// RotateSecrets re-seals every stored secret with the current key of the Store's
// SecretBox (`cams rotate-secrets-key`): values sealed with the previous key, and
// plain values stored before a key was set, end sealed with the current one. Rows
// are rewritten in batches of batchSize, each in its own transaction with the rows
// locked, so it can run while CAMS serves. It returns how many rows it rewrote.
// Without a SecretBox it fails: there is nothing to seal with.
func (s *Store) RotateSecrets(ctx context.Context, batchSize int) (int, error) {
	if s.box == nil {
		return 0, errors.New("CAMS_SECRETS_KEY is not set: nothing to encrypt with")
	}
	if batchSize <= 0 {
		batchSize = 500
	}
	after, total := "", 0
	for {
		n, last, err := s.rotateBatch(ctx, after, batchSize)
		total += n
		if err != nil || last == "" {
			return total, err
		}
		after = last
	}
}

func (s *Store) rotateBatch(ctx context.Context, after string, limit int) (rewritten int, last string, err error) {
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `SELECT `+columns+` FROM agent_inboxes
			WHERE ai_agent_address > $1 ORDER BY ai_agent_address LIMIT $2 FOR UPDATE`, after, limit)
		if err != nil {
			return err
		}
		items, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Mapping, error) { return s.scanMapping(r) })
		if err != nil {
			return err
		}
		for _, m := range items {
			last = m.AIAgentAddress
			if len(m.SigningSecrets) == 0 && m.InboxAuth == nil {
				continue
			}
			secrets, auth, err := s.seal(m)
			if err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, `UPDATE agent_inboxes SET signing_secrets = $2, inbox_auth = $3 WHERE ai_agent_address = $1`,
				m.AIAgentAddress, secrets, auth); err != nil {
				return err
			}
			rewritten++
		}
		if len(items) < limit {
			last = ""
		}
		return nil
	})
	if err != nil {
		return 0, "", fmt.Errorf("error re-encrypting secrets: %w", err)
	}
	return rewritten, last, nil
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
		m, err := s.scanMapping(tx.QueryRow(ctx, `SELECT `+columns+` FROM agent_inboxes WHERE ai_agent_address = $1 FOR UPDATE`, address))
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
		secrets, auth, err := s.seal(m)
		if err != nil {
			return err
		}
		out, err = s.scanMapping(tx.QueryRow(ctx, `
			UPDATE agent_inboxes SET inbox_destination_type = $2, inbox_name = $3, status = $4,
				description = $5, owner_team = $6, updated_by = $7, signing_secrets = $8,
				inactive_policy = $10, inbox_auth = $11,
				inactive_by_health = inactive_by_health AND NOT $9,
				last_updated_timestamp = greatest(date_trunc('milliseconds', now()), last_updated_timestamp + interval '1 millisecond')
			WHERE ai_agent_address = $1
			RETURNING `+columns,
			address, m.InboxDestinationType, m.InboxName, m.Status, m.Description, m.OwnerTeam, m.UpdatedBy, secrets,
			p.Status != nil, m.InactivePolicy, auth))
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
	items, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Mapping, error) { return s.scanMapping(r) })
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
		m, err := s.scanMapping(tx.QueryRow(ctx, `SELECT `+columns+` FROM agent_inboxes WHERE ai_agent_address = $1 FOR UPDATE`, r.Address))
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
		out, err = s.scanMapping(tx.QueryRow(ctx, `
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
