/** Length of revision ids (hex): a composed version starts with the revision it was built from and a dot. */
export const REVISION_ID_LENGTH = 12;

/** The revision a composed version was built from ("" for versions from before rollouts). */
export function revisionOfVersion(version: string): string {
  const dot = version.indexOf('.');
  return dot === REVISION_ID_LENGTH ? version.slice(0, dot) : '';
}
