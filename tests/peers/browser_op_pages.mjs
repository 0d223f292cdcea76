// The OpenID Provider's own pages in Debian's Chromium, as a user and an admin meet them:
// a native app's "Continue to" page (confirm, then back and reload make nothing twice), the
// sign-out confirmation an app's logout link without a hint leads to, and the app's recent
// sign-ins in the admin UI. Screenshots go to SCREENSHOT_DIR.
// Usage: node browser_op_pages.mjs BASE USER_EMAIL PASSWORD NATIVE_AUTHORIZE_URL LOGOUT_URL
//        ADMIN_EMAIL TOTP_CODE APP_SLUG
import { journey, shot, submit, text, signIn } from './admin_pages.mjs';

const [base, email, password, nativeUrl, logoutUrl, adminEmail, code, slug] = process.argv.slice(2);
await journey(async (page) => {
  const out = {};
  // The user signs in with a password (an org without SSO).
  await page.goto(`${base}/sso/login`);
  await page.fill('#email', email);
  await submit(page, 'button[type=submit]');
  await page.fill('#password', password);
  await submit(page, 'button[type=submit]');
  // A native app asks: gatehouse asks the user first.
  await page.goto(nativeUrl);
  out.confirm_title = await text(page, 'h1');
  await shot(page, 'native-continue');
  const continueUrl = page.url();
  await submit(page, '#continue');
  out.to_app = page.url();
  // Back to the confirmation page and reload: the sign-in is done, nothing twice.
  await page.goto(continueUrl);
  out.again_title = await text(page, 'h1');
  out.again_text = await text(page, 'main');
  await shot(page, 'native-continue-again');
  // An app's logout link without an id_token_hint: the user confirms.
  await page.goto(logoutUrl);
  out.logout_title = await text(page, 'h1');
  out.logout_text = await text(page, 'main');
  await shot(page, 'logout-confirm');
  await submit(page, 'button[type=submit]');
  out.bye = page.url();
  await page.goBack();
  out.back_title = await text(page, 'h1');
  await shot(page, 'logout-back');
  const me = await page.goto(`${base}/sso/me`);
  out.me_status = me.status();
  // The admin sees the app's recent sign-ins.
  await signIn(page, base, adminEmail, password, code);
  await page.goto(`${base}/sso/admin/apps/${slug}`);
  out.sign_ins = await text(page, '#sign-ins tbody');
  out.issuer = await text(page, '#issuer');
  await shot(page, 'app-recent-sign-ins');
  return out;
});
