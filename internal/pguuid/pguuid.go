// Package pguuid teaches pgx v5 to encode and scan github.com/google/uuid values
// natively, as 16 raw bytes.
//
// Without it pgx has no plan for uuid.UUID: it falls back to the type's
// driver.Valuer (a 36-byte string), fails to encode the string in binary format,
// builds an error with fmt.Errorf (pgtype.newEncodeError), throws it away and
// encodes the string as text — once per element of every uuid[] parameter, and it
// scans through sql.Scanner by parsing a string. In the router's drain that path was
// 20–29 % of the process's CPU (BENCHMARKS.md, "Where the router's time goes").
//
// The pattern is pgx's own (github.com/jackc/pgx-gofrs-uuid): a codec registered for
// the uuid OID that handles the library's type and delegates everything else to
// pgtype.UUIDCodec, plus wrap plans so []uuid.UUID goes through pgtype.FlatArray
// without reflection. Values on the wire are unchanged.
package pguuid

import (
	"context"
	"fmt"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
)

// Register installs the uuid codec and the []uuid.UUID wrap plans in m. Call it once
// per connection (pgx keeps a Map per connection), before the connection runs
// queries: pgxpool.Config.AfterConnect, or AfterConnect below. Scanning a SQL NULL
// into a uuid.UUID leaves uuid.Nil, as uuid.UUID's own sql.Scanner did before
// (scan into **uuid.UUID or uuid.NullUUID to tell NULL apart).
func Register(m *pgtype.Map) {
	t := &pgtype.Type{Name: "uuid", OID: pgtype.UUIDOID, Codec: Codec{}}
	m.RegisterType(t)
	m.RegisterType(&pgtype.Type{Name: "_uuid", OID: pgtype.UUIDArrayOID, Codec: &pgtype.ArrayCodec{ElementType: t}})
	// The OIDs to assume where the server does not describe parameters (exec and
	// simple-protocol query modes, e.g. behind PgBouncer).
	m.RegisterDefaultPgType(uuid.UUID{}, "uuid")
	m.RegisterDefaultPgType([]uuid.UUID{}, "_uuid")
	m.TryWrapEncodePlanFuncs = append([]pgtype.TryWrapEncodePlanFunc{tryWrapSliceEncode}, m.TryWrapEncodePlanFuncs...)
	m.TryWrapScanPlanFuncs = append([]pgtype.TryWrapScanPlanFunc{tryWrapSliceScan}, m.TryWrapScanPlanFuncs...)
}

// AfterConnect is a pgxpool AfterConnect hook that calls Register on the new
// connection's type map. It never fails.
func AfterConnect(_ context.Context, c *pgx.Conn) error {
	Register(c.TypeMap())
	return nil
}

// Codec is pgtype.UUIDCodec extended with uuid.UUID and *uuid.UUID (a nil pointer
// encodes as NULL; scanning NULL into **uuid.UUID sets it to nil through pgx's
// pointer-to-pointer plan).
type Codec struct{ pgtype.UUIDCodec }

// PlanEncode implements pgtype.Codec.
func (c Codec) PlanEncode(m *pgtype.Map, oid uint32, format int16, value any) pgtype.EncodePlan {
	switch value.(type) {
	case uuid.UUID, *uuid.UUID:
		if p, ok := byFormat[pgtype.EncodePlan](format, encodeBinary{}, encodeText{}); ok {
			return p
		}
	}
	return c.UUIDCodec.PlanEncode(m, oid, format, value)
}

// PlanScan implements pgtype.Codec.
func (c Codec) PlanScan(m *pgtype.Map, oid uint32, format int16, target any) pgtype.ScanPlan {
	if _, ok := target.(*uuid.UUID); ok {
		if p, ok := byFormat[pgtype.ScanPlan](format, scanBinary{}, scanText{}); ok {
			return p
		}
	}
	return c.UUIDCodec.PlanScan(m, oid, format, target)
}

// byFormat picks the binary or the text plan; false for another format code.
func byFormat[P any](format int16, binary, text P) (P, bool) {
	switch format {
	case pgtype.BinaryFormatCode:
		return binary, true
	case pgtype.TextFormatCode:
		return text, true
	}
	var none P
	return none, false
}

func deref(value any) (uuid.UUID, bool) {
	switch v := value.(type) {
	case uuid.UUID:
		return v, true
	case *uuid.UUID:
		if v == nil {
			return uuid.UUID{}, false
		}
		return *v, true
	}
	return uuid.UUID{}, false
}

type encodeBinary struct{}

func (encodeBinary) Encode(value any, buf []byte) ([]byte, error) {
	u, ok := deref(value)
	if !ok {
		return nil, nil // NULL
	}
	return append(buf, u[:]...), nil
}

type encodeText struct{}

func (encodeText) Encode(value any, buf []byte) ([]byte, error) {
	u, ok := deref(value)
	if !ok {
		return nil, nil
	}
	return append(buf, u.String()...), nil
}

type scanBinary struct{}

func (scanBinary) Scan(src []byte, dst any) error {
	if src == nil {
		*dst.(*uuid.UUID) = uuid.Nil // what (*uuid.UUID).Scan(nil) gives
		return nil
	}
	if len(src) != 16 {
		return fmt.Errorf("invalid length for uuid: %d", len(src))
	}
	copy(dst.(*uuid.UUID)[:], src)
	return nil
}

type scanText struct{}

func (scanText) Scan(src []byte, dst any) error {
	if src == nil {
		*dst.(*uuid.UUID) = uuid.Nil
		return nil
	}
	u, err := uuid.ParseBytes(src)
	if err != nil {
		return err
	}
	*dst.(*uuid.UUID) = u
	return nil
}

// tryWrapSliceEncode hands []uuid.UUID to the array codec as a pgtype.FlatArray, so
// elements are indexed without reflection.
func tryWrapSliceEncode(value any) (pgtype.WrappedEncodePlanNextSetter, any, bool) {
	if s, ok := value.([]uuid.UUID); ok {
		return &sliceEncode{}, pgtype.FlatArray[uuid.UUID](s), true
	}
	return nil, nil, false
}

type sliceEncode struct{ next pgtype.EncodePlan }

func (p *sliceEncode) SetNext(next pgtype.EncodePlan) { p.next = next }

func (p *sliceEncode) Encode(value any, buf []byte) ([]byte, error) {
	return p.next.Encode(pgtype.FlatArray[uuid.UUID](value.([]uuid.UUID)), buf)
}

// tryWrapSliceScan scans uuid[] into *[]uuid.UUID through *pgtype.FlatArray.
func tryWrapSliceScan(target any) (pgtype.WrappedScanPlanNextSetter, any, bool) {
	if s, ok := target.(*[]uuid.UUID); ok {
		return &sliceScan{}, (*pgtype.FlatArray[uuid.UUID])(s), true
	}
	return nil, nil, false
}

type sliceScan struct{ next pgtype.ScanPlan }

func (p *sliceScan) SetNext(next pgtype.ScanPlan) { p.next = next }

func (p *sliceScan) Scan(src []byte, dst any) error {
	return p.next.Scan(src, (*pgtype.FlatArray[uuid.UUID])(dst.(*[]uuid.UUID)))
}
