package version

// SetRelease stamps v and commit as a release build's -ldflags -X would, until restore.
func SetRelease(v, commit string) (restore func()) {
	oldV, oldC := releaseVersion, releaseCommit
	releaseVersion, releaseCommit = v, commit
	return func() { releaseVersion, releaseCommit = oldV, oldC }
}
