package router

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/msgrouter/msgrouter/internal/cams"
	"github.com/msgrouter/msgrouter/internal/httpapi"
	"github.com/msgrouter/msgrouter/internal/outbox"
	"github.com/msgrouter/msgrouter/internal/pgtext"
)

// admin serves the message status and replay API (DESIGN §6).
type admin struct {
	store      *outbox.Store
	dispatcher *outbox.Dispatcher
}

func (a *admin) routes(m *httpapi.Mux) {
	m.HandleFunc("GET /v1/messages/{messageId}", a.get)
	m.HandleFunc("GET /v1/messages", a.list)
	m.HandleFunc("POST /v1/messages/{messageId}/replay", a.replay)
	m.HandleFunc("POST /v1/dead-letters/replay", a.replayMatching)
}

func parseID(w http.ResponseWriter, r *http.Request) (uuid.UUID, bool) {
	raw := r.PathValue("messageId")
	id, err := uuid.Parse(raw)
	if err != nil || len(raw) != 36 {
		// Not a UUID, so not a messageId the router could have seen.
		httpapi.WriteError(w, http.StatusNotFound, httpapi.CodeNotFound, "no message with id "+strconv.Quote(raw)+" (messageIds are UUIDs)")
		return id, false
	}
	return id, true
}

func (a *admin) get(w http.ResponseWriter, r *http.Request) {
	id, ok := parseID(w, r)
	if !ok {
		return
	}
	v, err := a.store.Get(r.Context(), id)
	switch {
	case errors.Is(err, outbox.ErrNotFound):
		httpapi.WriteError(w, http.StatusNotFound, httpapi.CodeNotFound, "the router has not seen message "+id.String())
	case err != nil:
		httpapi.WriteError(w, http.StatusServiceUnavailable, httpapi.CodeUnavailable, "cannot read the message store: "+err.Error())
	default:
		maskView(&v)
		httpapi.WriteJSON(w, http.StatusOK, v)
	}
}

// maskView removes the userinfo of an HTTP inbox URL from a view: the destination
// name, and the error texts that may quote the URL (Go's HTTP client keeps the
// user name and replaces the password by "***"). DESIGN §6: credentials never leave
// the router.
func maskView(v *outbox.View) {
	if v.Destination == nil || v.Destination.Type != cams.TypeHTTPEndpoint {
		return
	}
	u, err := url.Parse(v.Destination.Name)
	if err != nil || u.User == nil {
		return
	}
	secrets := []string{u.User.String() + "@", u.User.Username() + ":***@"}
	u.User = nil
	v.Destination.Name = u.String()
	scrub := func(s *string) {
		if s == nil {
			return
		}
		for _, sec := range secrets {
			*s = strings.ReplaceAll(*s, sec, "")
		}
	}
	scrub(v.LastError)
	for i := range v.History {
		scrub(v.History[i].Error)
	}
}

var statuses = map[string]bool{
	outbox.StatusPending: true, outbox.StatusDelivered: true, outbox.StatusRejected: true, outbox.StatusDeadLettered: true,
}

func (a *admin) list(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	f := outbox.Filter{Status: q.Get("status"), Address: q.Get("aiAgentAddress"), OrderingKey: q.Get("orderingKey"), Cursor: q.Get("cursor"), Limit: 100}
	if !storable(w, "aiAgentAddress", f.Address) || !storable(w, "orderingKey", f.OrderingKey) || !storable(w, "cursor", f.Cursor) {
		return
	}
	if f.Status != "" && !statuses[f.Status] {
		httpapi.WriteError(w, http.StatusBadRequest, httpapi.CodeInvalidRequest, "status must be one of PENDING, DELIVERED, REJECTED, DEAD_LETTERED")
		return
	}
	if l := q.Get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 1 || n > 1000 {
			httpapi.WriteError(w, http.StatusBadRequest, httpapi.CodeInvalidRequest, "limit must be a whole number from 1 to 1000")
			return
		}
		f.Limit = n
	}
	items, next, err := a.store.List(r.Context(), f)
	switch {
	case errors.Is(err, outbox.ErrBadCursor):
		httpapi.WriteError(w, http.StatusBadRequest, httpapi.CodeInvalidRequest, "cursor is not one this API returned")
		return
	case err != nil:
		httpapi.WriteError(w, http.StatusServiceUnavailable, httpapi.CodeUnavailable, "cannot read the message store: "+err.Error())
		return
	}
	if items == nil {
		items = []outbox.View{}
	}
	for i := range items {
		maskView(&items[i])
	}
	var cursor *string
	if next != "" {
		cursor = &next
	}
	httpapi.WriteJSON(w, http.StatusOK, map[string]any{"items": items, "nextCursor": cursor})
}

func (a *admin) replay(w http.ResponseWriter, r *http.Request) {
	id, ok := parseID(w, r)
	if !ok {
		return
	}
	err := a.store.Replay(r.Context(), id)
	switch {
	case errors.Is(err, outbox.ErrNotFound):
		httpapi.WriteError(w, http.StatusNotFound, httpapi.CodeNotFound, "the router has not seen message "+id.String())
	case errors.Is(err, outbox.ErrNotReplayable):
		httpapi.WriteError(w, http.StatusConflict, httpapi.CodeConflict, "only REJECTED or DEAD_LETTERED messages can be replayed: "+err.Error())
	case err != nil:
		httpapi.WriteError(w, http.StatusServiceUnavailable, httpapi.CodeUnavailable, "cannot replay: "+err.Error())
	default:
		a.dispatcher.Poke()
		httpapi.WriteJSON(w, http.StatusAccepted, map[string]any{"messageId": id, "status": outbox.StatusPending})
	}
}

// storable refuses a filter value Postgres cannot compare (U+0000, invalid UTF-8:
// the query would fail, DESIGN §2) with a 400 rather than a 503.
func storable(w http.ResponseWriter, name, v string) bool {
	if pgtext.Valid(v) {
		return true
	}
	httpapi.WriteError(w, http.StatusBadRequest, httpapi.CodeInvalidRequest, name+" must be valid UTF-8 without U+0000")
	return false
}

type replayRequest struct {
	Status         string  `json:"status"`
	AIAgentAddress string  `json:"aiAgentAddress"`
	Reason         string  `json:"reason"`
	Since          *string `json:"since"`
}

func (a *admin) replayMatching(w http.ResponseWriter, r *http.Request) {
	var req replayRequest
	body := http.MaxBytesReader(w, r.Body, 64<<10)
	if r.ContentLength != 0 {
		dec := json.NewDecoder(body)
		if err := dec.Decode(&req); err != nil && !errors.Is(err, io.EOF) {
			httpapi.WriteError(w, http.StatusBadRequest, httpapi.CodeInvalidRequest, "malformed JSON: "+err.Error())
			return
		}
	}
	if req.Status != "" && req.Status != outbox.StatusDeadLettered && req.Status != outbox.StatusRejected {
		httpapi.WriteError(w, http.StatusBadRequest, httpapi.CodeInvalidRequest, "status must be DEAD_LETTERED or REJECTED (or absent for both)")
		return
	}
	f := outbox.Filter{Status: req.Status, Address: req.AIAgentAddress, Reason: req.Reason}
	if !storable(w, "aiAgentAddress", f.Address) || !storable(w, "reason", f.Reason) {
		return
	}
	if req.Since != nil && *req.Since != "" {
		t, err := time.Parse(time.RFC3339Nano, *req.Since)
		if err != nil {
			httpapi.WriteError(w, http.StatusBadRequest, httpapi.CodeInvalidRequest, "since must be an RFC 3339 time like 2026-11-28T15:04:05Z")
			return
		}
		f.Since = t
	}
	n, err := a.store.ReplayMatching(r.Context(), f)
	if err != nil {
		httpapi.WriteError(w, http.StatusServiceUnavailable, httpapi.CodeUnavailable, "cannot replay: "+err.Error())
		return
	}
	if n > 0 {
		a.dispatcher.Poke()
	}
	httpapi.WriteJSON(w, http.StatusAccepted, map[string]int{"replayed": n})
}
