package imcloud

// Version is this release of imcloud, in semantic versioning: the servers
// log it at startup and export it as the version label of
// imcloud_build_info. CHANGELOG.md lists what each version changed.
const Version = "0.9.0"
