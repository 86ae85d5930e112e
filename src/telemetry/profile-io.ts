/** Reading and writing profile files (the I/O half of src/model/profile.ts, kept out of the pure model). */
import { readFileSync, writeFileSync } from 'node:fs';
import { parseProfile, ProfileError } from '../model/profile.ts';
import type { Profile } from '../model/profile-types.ts';

export function loadProfile(path: string): Profile {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new ProfileError(`cannot read profile ${path}: ${(err as Error).message}`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new ProfileError(`profile ${path} is not valid JSON: ${(err as Error).message}`);
  }
  try {
    return parseProfile(json);
  } catch (err) {
    if (err instanceof ProfileError) throw new ProfileError(`profile ${path}: ${err.message}`);
    throw err;
  }
}

export function saveProfile(path: string, p: Profile): void {
  writeFileSync(path, JSON.stringify(p) + '\n');
}
