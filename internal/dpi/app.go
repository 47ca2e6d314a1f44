package dpi

// App is an application identity. Its String is the name a ContextProfile
// uses (internal/policy.KnownApps lists the same names; a test checks it).
type App uint8

// The applications the engine tells apart. AppUnknown is a flow that was
// examined and matched nothing, or has not been decided yet.
const (
	AppUnknown App = iota
	AppTLS
	AppHTTPS
	AppHTTP
	AppHTTP2
	AppSSH
	AppDNS
	AppSMB
	AppRDP
	AppLDAP
	AppKerberos
	AppMySQL
	AppPostgres
	AppRedis
	AppMongoDB
	AppSMTP
	AppFTP
	AppNTP
	AppSNMP
	numApps
)

var appNames = [numApps]string{
	AppUnknown:  "APP_UNKNOWN",
	AppTLS:      "APP_TLS",
	AppHTTPS:    "APP_HTTPS",
	AppHTTP:     "APP_HTTP",
	AppHTTP2:    "APP_HTTP2",
	AppSSH:      "APP_SSH",
	AppDNS:      "APP_DNS",
	AppSMB:      "APP_SMB",
	AppRDP:      "APP_RDP",
	AppLDAP:     "APP_LDAP",
	AppKerberos: "APP_KERBEROS",
	AppMySQL:    "APP_MYSQL",
	AppPostgres: "APP_POSTGRES",
	AppRedis:    "APP_REDIS",
	AppMongoDB:  "APP_MONGODB",
	AppSMTP:     "APP_SMTP",
	AppFTP:      "APP_FTP",
	AppNTP:      "APP_NTP",
	AppSNMP:     "APP_SNMP",
}

func (a App) String() string {
	if a < numApps {
		return appNames[a]
	}
	return "APP_UNKNOWN"
}

// IsTLS says whether the app's traffic is TLS (a ContextProfile's APP_TLS
// matches it).
func (a App) IsTLS() bool { return a == AppTLS || a == AppHTTPS || a == AppHTTP2 }

// Apps returns every application, AppUnknown included, in numeric order.
func Apps() []App {
	out := make([]App, numApps)
	for i := range out {
		out[i] = App(i)
	}
	return out
}

// ParseApp returns the App named s ("APP_SSH").
func ParseApp(s string) (App, bool) {
	for i, n := range appNames {
		if n == s {
			return App(i), true
		}
	}
	return AppUnknown, false
}
