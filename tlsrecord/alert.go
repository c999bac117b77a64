package tlsrecord

import (
	"errors"
	"strconv"
)

// Alert is a TLS alert description (RFC 8446 §6). An Alert is also an
// error value, so errors.Is(err, AlertBadRecordMAC) asks which alert a
// failure maps to.
type Alert uint8

// The alerts this package sends or reports by name.
const (
	AlertCloseNotify       Alert = 0
	AlertUnexpectedMessage Alert = 10
	AlertBadRecordMAC      Alert = 20
	AlertRecordOverflow    Alert = 22
	AlertHandshakeFailure  Alert = 40
	AlertIllegalParameter  Alert = 47
	AlertDecodeError       Alert = 50
	AlertProtocolVersion   Alert = 70
	AlertInternalError     Alert = 80
	AlertUserCanceled      Alert = 90
)

var alertNames = map[Alert]string{
	AlertCloseNotify:       "close_notify",
	AlertUnexpectedMessage: "unexpected_message",
	AlertBadRecordMAC:      "bad_record_mac",
	AlertRecordOverflow:    "record_overflow",
	AlertHandshakeFailure:  "handshake_failure",
	AlertIllegalParameter:  "illegal_parameter",
	AlertDecodeError:       "decode_error",
	AlertProtocolVersion:   "protocol_version",
	AlertInternalError:     "internal_error",
	AlertUserCanceled:      "user_canceled",
}

func (a Alert) String() string {
	if s, ok := alertNames[a]; ok {
		return s
	}
	return "alert(" + strconv.Itoa(int(a)) + ")"
}

func (a Alert) Error() string { return "tls alert " + a.String() }

// AlertError is a failure that ends the connection. When Remote is false
// this side detected it and should send Alert (SealAlert) before closing;
// when Remote is true the peer sent Alert and nothing should be answered.
type AlertError struct {
	Alert  Alert
	Remote bool
	Reason string
}

func (e *AlertError) Error() string {
	if e.Remote {
		return "tlsrecord: peer sent alert " + e.Alert.String()
	}
	return "tlsrecord: " + e.Reason + " (" + e.Alert.String() + ")"
}

// Unwrap lets errors.Is match the Alert.
func (e *AlertError) Unwrap() error { return e.Alert }

// ErrPeerClosed reports the peer's close_notify: a clean end of its
// sending side, not a failure. Plaintext before it has been returned.
var ErrPeerClosed = errors.New("tlsrecord: peer sent close_notify")

func fail(a Alert, reason string) error { return &AlertError{Alert: a, Reason: reason} }
