package mapping

import "encoding/json"

// Update is the body of POST /v1/agent-inboxes (register) and PUT
// /v1/agent-inboxes/{aiAgentAddress} (partial update) (DESIGN §4): what clients
// write and the reference CAMS reads, one type so the two cannot drift. A nil field
// is absent (JSON null reads as absent too, except for InboxAuth): PUT leaves it as
// it is, POST gives it its default.
type Update struct {
	// AIAgentAddress is required by POST; on PUT it may only repeat the path's.
	AIAgentAddress       *string `json:"aiAgentAddress,omitempty"`
	InboxDestinationType *string `json:"inboxDestinationType,omitempty"`
	InboxName            *string `json:"inboxName,omitempty"`
	Status               *string `json:"status,omitempty"`
	Description          *string `json:"description,omitempty"`
	OwnerTeam            *string `json:"ownerTeam,omitempty"`
	// UpdatedBy defaults, on the reference CAMS, to the name of the caller's key.
	UpdatedBy      *string   `json:"updatedBy,omitempty"`
	SigningSecrets *[]string `json:"signingSecrets,omitempty"`
	InactivePolicy *string   `json:"inactivePolicy,omitempty"`
	// InboxAuth is nil to leave the credentials as they are, json.RawMessage("null")
	// to remove them (PUT), or the new credentials: any value that encodes as an
	// InboxAuth object, such as a *InboxAuth. Decoding sets it to the
	// json.RawMessage received (nil when absent), so the server decodes the
	// credentials itself, strictly and without echoing them in an error.
	InboxAuth any `json:"inboxAuth,omitempty"`
}

// UnmarshalJSON reads an Update, InboxAuth as its raw JSON (see Update.InboxAuth).
func (u *Update) UnmarshalJSON(b []byte) error {
	type fields Update // without this method
	j := struct {
		*fields
		InboxAuth json.RawMessage `json:"inboxAuth"`
	}{fields: (*fields)(u)}
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	if j.InboxAuth != nil {
		u.InboxAuth = j.InboxAuth
	}
	return nil
}
