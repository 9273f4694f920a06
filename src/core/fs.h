/*
 * fs.h - the two folder operations the job runners need: mkdir -p and rm -rf.
 */
#ifndef REEL_CORE_FS_H
#define REEL_CORE_FS_H

/**
 * Create path and its missing parents (mode 0700).
 * @return 0, or a negative REEL_ERR(errno)
 */
int reel_mkdir_p(const char *path);

/**
 * Remove path and everything below it, without following links; a missing
 * path is fine. Entries that cannot be removed are logged (as warnings under
 * component) and skipped.
 */
void reel_rm_tree(const char *path, const char *component);

#endif
