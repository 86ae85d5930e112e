/**
 * The prompt count a request gets before dispatch, taken synchronously when the counter knows it (token ids once the
 * model's context length is known, a cached prompt): `PromptCounter.known` and `knownCount` (tokenize-routes.ts).
 */
import { describe, expect, it } from 'vitest';
import { PromptCounter } from '../../actors/gateway/tokens.ts';
import { knownCount } from '../../actors/gateway/tokenize-routes.ts';
import { HttpError } from '../../actors/gateway/openai.ts';
import type { TokenizeReply, TokenizeRequest } from '../../protocols/messages.ts';

function counter(): { c: PromptCounter; asked: TokenizeRequest[] } {
  const asked: TokenizeRequest[] = [];
  const c = new PromptCounter(async (req) => {
    asked.push(req);
    const count = Array.isArray(req.prompt) ? req.prompt.length : (req.prompt ?? '').split(' ').length + (req.messages?.length ?? 0);
    return { v: 1, ok: true, count, maxModelLen: 100 } satisfies TokenizeReply;
  });
  return { c, asked };
}

describe('PromptCounter.known', () => {
  it('knows token ids once the model context length is known, and a prompt it counted, without asking the tokenizer', async () => {
    const { c, asked } = counter();
    expect(c.known('m', [1, 2, 3], undefined)).toBeUndefined(); // the context length is not known yet
    expect(await c.count('m', [1, 2, 3], undefined)).toEqual({ count: 3, maxModelLen: 100 });
    expect(asked).toHaveLength(1);
    expect(c.known('m', [1, 2, 3, 4, 5], undefined)).toEqual({ count: 5, maxModelLen: 100 });
    expect(c.known('other', [1, 2], undefined)).toBeUndefined(); // another model's context length is its own

    expect(c.known('m', 'a b c', undefined)).toBeUndefined();
    expect(await c.count('m', 'a b c', undefined)).toEqual({ count: 3, maxModelLen: 100 });
    expect(c.known('m', 'a b c', undefined)).toEqual({ count: 3, maxModelLen: 100 });
    expect(c.known('m', 'a b c', undefined, { add_special_tokens: false })).toBeUndefined(); // the template's parameters are in the key
    const chat = [{ role: 'user', content: 'hi' }];
    expect(c.known('m', undefined, chat as never)).toBeUndefined();
    await c.count('m', undefined, chat as never);
    expect(c.known('m', undefined, chat as never)).toEqual({ count: 2, maxModelLen: 100 });
    expect(asked).toHaveLength(3); // the known counts asked nothing
  });

  it('knownCount applies truncate_prompt_tokens and refuses one past the context length, as countTokens does', async () => {
    const { c } = counter();
    await c.count('m', [1], undefined);
    expect(knownCount(c, 'm', [1, 2, 3, 4], undefined, { truncate_prompt_tokens: 2 })).toEqual({ count: 2, maxModelLen: 100 });
    expect(() => knownCount(c, 'm', [1, 2, 3, 4], undefined, { truncate_prompt_tokens: 101 })).toThrow(HttpError);
    expect(knownCount(c, 'm', 'not counted yet', undefined)).toBeUndefined();
  });
});
