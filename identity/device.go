package identity

import (
	"context"
	"time"
)

// DeviceConnector signs users in at an OpenID Connect provider with the
// OAuth 2.0 device authorization grant (RFC 8628), the broker being the
// provider's client, and checks them again later with the provider's
// refresh token.
type DeviceConnector interface {
	// StartDevice asks the provider for a device code and a user code.
	StartDevice(ctx context.Context) (DeviceAuthorization, error)
	// PollDevice asks whether the user approved the device code. A refusal
	// or "not yet" is an *OAuthError (authorization_pending, slow_down,
	// expired_token, access_denied, invalid_grant).
	PollDevice(ctx context.Context, deviceCode string) (DeviceLogin, error)
	// RefreshDevice uses the provider's refresh token: the user as the
	// provider sees them now, and the refresh token to use next time (the
	// provider may rotate it). The provider ending the grant is an
	// *OAuthError invalid_grant.
	RefreshDevice(ctx context.Context, refreshToken string) (DeviceLogin, error)
	// DeviceSettings are the connector's session settings.
	DeviceSettings() DeviceSettings
}

// DeviceSettings say how often a session is checked again with the provider.
type DeviceSettings struct {
	// RevalidateAfter is how old the last check may be before a refresh
	// asks the provider again.
	RevalidateAfter time.Duration
	// Grace is how long past RevalidateAfter the last checked identity is
	// still served while the provider cannot be reached; 0 answers 503.
	Grace time.Duration
}

// DeviceAuthorization is the provider's answer to a device authorization request.
type DeviceAuthorization struct {
	DeviceCode              string
	UserCode                string
	VerificationURI         string
	VerificationURIComplete string
	ExpiresIn               time.Duration
	Interval                time.Duration // 0 when the provider named none
}

// DeviceLogin is a user the provider vouched for, with the refresh token
// to check them again with (the previous one when the provider sent none).
type DeviceLogin struct {
	Identity     Identity
	RefreshToken string
}

// OAuthError is an OAuth 2.0 error answer of the provider (RFC 6749 §5.2).
type OAuthError struct {
	Code        string
	Description string
}

func (e *OAuthError) Error() string {
	if e.Description == "" {
		return e.Code
	}
	return e.Code + ": " + e.Description
}
